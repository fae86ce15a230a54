package dingtalk

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestNoSecretInAnyError drives every error path the client has and checks
// that neither the app secret nor the access token appears in the error,
// whichever way it is printed.
func TestNoSecretInAnyError(t *testing.T) {
	deadAddr := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return "http://" + ln.Addr().String()
	}
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T) error
	}{
		{"gettoken connection refused", func(t *testing.T) error {
			c, err := NewClient(Options{Family: Legacy, BaseURL: deadAddr(t), AppKey: testKey, AppSecret: testSecret})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetChat(ctx, "chat1")
			return err
		}},
		{"gettoken timeout", func(t *testing.T) error {
			mux := http.NewServeMux()
			mux.HandleFunc("/gettoken", func(w http.ResponseWriter, r *http.Request) { hang(t, r) })
			c, err := NewClient(Options{Family: Legacy, BaseURL: serve(t, mux), AppKey: testKey, AppSecret: testSecret,
				HTTPClient: &http.Client{Timeout: 50 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetChat(ctx, "chat1")
			return err
		}},
		{"gettoken refused credentials", func(t *testing.T) error {
			mux := http.NewServeMux()
			mux.HandleFunc("/gettoken", replyWith(200, js, `{"errcode":40089,"errmsg":"bad"}`))
			c, err := NewClient(Options{Family: Legacy, BaseURL: serve(t, mux), AppKey: testKey, AppSecret: testSecret})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetChat(ctx, "chat1")
			return err
		}},
		{"API connection refused", func(t *testing.T) error {
			c, err := NewClient(Options{Family: Legacy, BaseURL: deadAddr(t), TokenSource: staticToken(muxToken)})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.CreateChat(ctx, &CreateChatRequest{Name: "n", Owner: "o", UserIDs: []string{"o"}})
			return err
		}},
		{"API timeout", func(t *testing.T) error {
			c, mux, _ := setupMux(t, func(o *Options) { o.HTTPClient = &http.Client{Timeout: 50 * time.Millisecond} })
			mux.HandleFunc("/topapi/chat/qrcode/get", func(w http.ResponseWriter, r *http.Request) { hang(t, r) })
			_, err := c.QRCodeLink(ctx, "chat1", "u1")
			return err
		}},
		{"API dropped connection", func(t *testing.T) error {
			c, mux, _ := setupMux(t)
			mux.HandleFunc("/chat/update", func(w http.ResponseWriter, r *http.Request) {
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
			})
			return c.UpdateChat(ctx, &UpdateChatRequest{ChatID: "chat1", AddUserIDs: []string{"u"}})
		}},
		{"API bad token twice", func(t *testing.T) error {
			c, mux, _ := setupMux(t)
			mux.HandleFunc("/chat/get", replyWith(200, js, `{"errcode":40014,"errmsg":"不合法的access_token"}`))
			_, err := c.GetChat(ctx, "chat1")
			return err
		}},
		{"API error page", func(t *testing.T) error {
			c, mux, _ := setupMux(t)
			mux.HandleFunc("/chat/get", replyWith(502, "text/html", "<html>"+muxToken+"</html>"))
			_, err := c.GetChat(ctx, "chat1")
			return err
		}},
		{"API malformed reply", func(t *testing.T) error {
			c, mux, _ := setupMux(t)
			mux.HandleFunc("/chat/get", replyWith(200, js, `{"errcode":0,"chat_info":"`+muxToken))
			_, err := c.GetChat(ctx, "chat1")
			return err
		}},
		{"cancelled", func(t *testing.T) error {
			c, mux, _ := setupMux(t)
			cctx, cancel := context.WithCancel(ctx)
			mux.HandleFunc("/chat/get", func(w http.ResponseWriter, r *http.Request) { cancel(); hang(t, r) })
			_, err := c.GetChat(cctx, "chat1")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(t)
			if err == nil {
				t.Fatal("no error")
			}
			for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), fmt.Sprintf("%v", unwrapAll(err))} {
				for _, secret := range []string{testSecret, muxToken} {
					if strings.Contains(text, secret) {
						t.Fatalf("secret %q leaked: %s", secret, text)
					}
				}
			}
		})
	}
}

// unwrapAll renders every error in err's chain.
func unwrapAll(err error) []string {
	var out []string
	for ; err != nil; err = unwrap(err) {
		out = append(out, err.Error())
	}
	return out
}

func unwrap(err error) error {
	u, ok := err.(interface{ Unwrap() error })
	if !ok {
		return nil
	}
	return u.Unwrap()
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://h/chat/get?access_token=abc&chatid=c1", "https://h/chat/get?access_token=REDACTED&chatid=c1"},
		{"https://h/gettoken?appkey=k&appsecret=s%20x", "https://h/gettoken?appkey=k&appsecret=REDACTED"},
		{"https://h/gettoken?AppSecret=s", "https://h/gettoken?AppSecret=REDACTED"},
		{"https://h/chat/get", "https://h/chat/get"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
