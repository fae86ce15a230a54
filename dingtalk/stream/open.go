package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// OpenError is the gateway refusing to open a connection: wrong
// credentials (401 authFailed), or any other answer without an endpoint.
type OpenError struct {
	Status  int    // the HTTP status
	Code    string // DingTalk's code, when it gave one
	Message string
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("stream: the gateway refused to open a connection: HTTP %d %s %s", e.Status, e.Code, e.Message)
}

// Auth says whether the gateway refused the app's credentials: retrying
// will not help until they are fixed.
func (e *OpenError) Auth() bool { return e.Status == http.StatusUnauthorized }

type openRequest struct {
	ClientID      string         `json:"clientId"`
	ClientSecret  string         `json:"clientSecret"`
	Subscriptions []subscription `json:"subscriptions"`
	UA            string         `json:"ua"`
	LocalIP       string         `json:"localIp"`
}

type subscription struct {
	Type  string `json:"type"`
	Topic string `json:"topic"`
}

// open asks the gateway for an endpoint and a ticket (good for one
// connection within 90 s), and returns the address to dial.
func (c *Client) open(ctx context.Context) (string, error) {
	body, err := json.Marshal(openRequest{
		ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret,
		Subscriptions: []subscription{{Type: typeEvent, Topic: "*"}},
		UA:            c.cfg.UserAgent, LocalIP: c.cfg.LocalIP,
	})
	if err != nil {
		return "", fmt.Errorf("stream: encoding the open request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.BaseURL+"/v1.0/gateway/connections/open", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("stream: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("stream: opening a connection: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("stream: reading the gateway's answer: %w", err)
	}
	var ans struct {
		Endpoint string `json:"endpoint"`
		Ticket   string `json:"ticket"`
		Code     string `json:"code"`
		Message  string `json:"message"`
	}
	_ = json.Unmarshal(raw, &ans)
	if resp.StatusCode != http.StatusOK || ans.Endpoint == "" || ans.Ticket == "" {
		msg := ans.Message
		if ans.Code == "" && msg == "" {
			msg = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
		}
		return "", &OpenError{Status: resp.StatusCode, Code: ans.Code, Message: msg}
	}
	u, err := url.Parse(ans.Endpoint)
	if err != nil || (u.Scheme != "wss" && u.Scheme != "ws") {
		return "", &OpenError{Status: resp.StatusCode, Message: "the endpoint is not a WebSocket address"}
	}
	q := u.Query()
	q.Set("ticket", ans.Ticket)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// errDial is a failed dial, its address (which carries the ticket) left out.
var errDial = errors.New("stream: the WebSocket dial failed")
