// Package docs holds the project's documentation; its test checks that
// every relative link in README.md and docs/ resolves, file and heading, so
// that the README's map cannot rot.
package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

var (
	linkRE = regexp.MustCompile(`\]\(([^()\s]+)\)`)
	codeRE = regexp.MustCompile("`[^`]*`")
)

// anchors are the heading anchors GitHub gives a Markdown file: lower case,
// punctuation dropped, spaces as hyphens, a repeated one numbered.
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	inCode := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// brokenLinks lists the relative links in the Markdown files that name a
// file that does not exist, or a heading the file does not have.
func brokenLinks(files []string) []string {
	var broken []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			broken = append(broken, fmt.Sprintf("%s: %v", file, err))
			continue
		}
		inCode := false
		for n, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inCode = !inCode
			}
			if inCode {
				continue
			}
			for _, m := range linkRE.FindAllStringSubmatch(codeRE.ReplaceAllString(line, ""), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path, anchor, _ := strings.Cut(target, "#")
				dest := file
				if path != "" {
					dest = filepath.Join(filepath.Dir(file), path)
				}
				where := fmt.Sprintf("%s:%d: %s", file, n+1, target)
				text, err := os.ReadFile(dest)
				if err != nil {
					if info, serr := os.Stat(dest); serr == nil && info.IsDir() && anchor == "" {
						continue // a link to a folder
					}
					broken = append(broken, where+": no such file")
					continue
				}
				if anchor != "" && !anchors(string(text))[anchor] {
					broken = append(broken, where+": no such heading")
				}
			}
		}
	}
	return broken
}

func TestLinksResolve(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	if len(files) < 5 {
		t.Fatalf("found only %v", files)
	}
	for _, b := range brokenLinks(files) {
		t.Error(b)
	}
}

// The check itself: a broken file, a broken heading, and what must pass.
func TestLinkCheckFindsBrokenLinks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("b.md", "# Title\n## `group.updated`\n## The lifecycle: one group per project\n## Twice\n## Twice\n")
	a := write("a.md", strings.Join([]string{
		"[ok](b.md) [ok](b.md#title) [ok](b.md#groupupdated) [ok](b.md#the-lifecycle-one-group-per-project) [ok](b.md#twice-1)",
		"[ok](https://example.com/x.md) [self](#a) `[not a link](nowhere.md)`",
		"# A",
		"```", "[in code](nowhere.md)", "```",
		"[broken file](missing.md) [broken heading](b.md#nope)",
	}, "\n"))
	got := brokenLinks([]string{a})
	want := []string{a + ":7: missing.md: no such file", a + ":7: b.md#nope: no such heading"}
	if !slices.Equal(got, want) {
		t.Errorf("brokenLinks = %q\nwant %q", got, want)
	}
}
