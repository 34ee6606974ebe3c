package fcgi

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// needTool returns the path of an external program the test needs. Without
// it the test is skipped loudly, or fails when STARDUST_REQUIRE_INTEGRATION=1
// (as in CI), so that a missing tool cannot pass for a green run.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " not on PATH (install Debian package " + pkg + ")"
	if os.Getenv("STARDUST_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("STARDUST_REQUIRE_INTEGRATION=1 but %s", msg)
	}
	t.Skipf("SKIPPED, NOT TESTED: %s", msg)
	return ""
}

// TestCgiFcgi drives the Front with libfcgi's cgi-fcgi, a FastCGI client
// written by others: it passes its environment as params and its standard
// input as FCGI_STDIN, and prints the CGI response.
func TestCgiFcgi(t *testing.T) {
	bin := needTool(t, "cgi-fcgi", "libfcgi-bin")
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			s := start(t, network, echo)
			const body = `[{"channel":"/foo","data":1}]`
			cmd := exec.Command(bin, "-bind", "-connect", s.dial)
			cmd.Env = []string{
				"REQUEST_METHOD=POST", "SERVER_PROTOCOL=HTTP/1.1",
				"REQUEST_URI=/comet/channel/foo%20bar?x=1", "SCRIPT_NAME=/comet/channel/foo bar",
				"QUERY_STRING=x=1", "HTTP_HOST=example.org", "REMOTE_ADDR=192.0.2.7", "REMOTE_PORT=4242",
				"CONTENT_TYPE=application/json", "CONTENT_LENGTH=" + strconv.Itoa(len(body)),
				"HTTP_USER_AGENT=cgi-fcgi",
			}
			cmd.Stdin = strings.NewReader(body)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("cgi-fcgi: %v\n%s", err, out)
			}
			got := decodeSeen(t)(parseCGI(t, out))
			if got.Method != "POST" || got.Path != "/comet/channel/foo bar" || got.Query != "x=1" ||
				got.Host != "example.org" || got.Remote != "192.0.2.7:4242" || got.Body != body ||
				got.ContentType != "application/json" || got.UserAgent != "cgi-fcgi" {
				t.Errorf("handler saw %+v", got)
			}
		})
	}
}

// parseCGI parses a CGI response as cgi-fcgi prints it.
func parseCGI(t *testing.T, out []byte) (*http.Response, error) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(out))
	h, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("cgi-fcgi output %q: %v", out, err)
	}
	resp := &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Header: http.Header(h)}
	if st := h.Get("Status"); !strings.HasPrefix(st, "200") {
		resp.StatusCode, resp.Status = http.StatusInternalServerError, st
	}
	resp.Body = io.NopCloser(br)
	return resp, nil
}
