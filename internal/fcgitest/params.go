package fcgitest

import (
	"net/url"
	"strings"
)

// NginxParams returns the params nginx sends for a request line
// "method requestURI HTTP/1.1" with Host localhost from 127.0.0.1, in a
// location with `include fastcgi_params; fastcgi_pass ...;` (Debian's
// /etc/nginx/fastcgi_params, nginx 1.22). Notably REQUEST_URI is the raw
// target with its query, SCRIPT_NAME ($fastcgi_script_name) is the decoded
// path, PATH_INFO is not sent, CONTENT_TYPE and CONTENT_LENGTH are sent empty
// when the request has none, and HTTPS is absent on plain HTTP. Callers may
// change the map.
func NginxParams(method, requestURI string) map[string]string {
	path, query := splitURI(requestURI)
	return map[string]string{
		"QUERY_STRING":      query,
		"REQUEST_METHOD":    method,
		"CONTENT_TYPE":      "",
		"CONTENT_LENGTH":    "",
		"SCRIPT_NAME":       path,
		"REQUEST_URI":       requestURI,
		"DOCUMENT_URI":      path,
		"DOCUMENT_ROOT":     "/var/www/html",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"REQUEST_SCHEME":    "http",
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE":   "nginx/1.22.1",
		"REMOTE_ADDR":       "127.0.0.1",
		"REMOTE_PORT":       "54321",
		"SERVER_ADDR":       "127.0.0.1",
		"SERVER_PORT":       "80",
		"SERVER_NAME":       "localhost",
		"REDIRECT_STATUS":   "200",
		"HTTP_HOST":         "localhost",
		"HTTP_USER_AGENT":   "fcgitest",
		"HTTP_ACCEPT":       "*/*",
	}
}

// NginxSplitParams returns NginxParams as sent from a location with
// `fastcgi_split_path_info ^(prefix)(/.*)$;` and
// `fastcgi_param PATH_INFO $fastcgi_path_info;`: SCRIPT_NAME is the prefix
// and PATH_INFO the decoded rest of the path.
func NginxSplitParams(method, requestURI, prefix string) map[string]string {
	p := NginxParams(method, requestURI)
	path := p["SCRIPT_NAME"]
	if rest, ok := strings.CutPrefix(path, prefix); ok && strings.HasPrefix(rest, "/") {
		p["SCRIPT_NAME"], p["PATH_INFO"] = prefix, rest
	} else {
		p["PATH_INFO"] = "" // the regex did not match: $fastcgi_path_info is empty
	}
	return p
}

// ApacheParams returns the params apache2 2.4's mod_proxy_fcgi sends for
// `ProxyPass /comet fcgi://backend/comet` (backend is "host:port") and a
// request line "method requestURI HTTP/1.1" with Host localhost, as built by
// ap_add_common_vars and ap_add_cgi_vars: REQUEST_URI is the request-line
// target as sent (with its query), SCRIPT_NAME the whole decoded path,
// PATH_INFO absent (unless proxy-fcgi-pathinfo is set), QUERY_STRING always
// present, and SCRIPT_FILENAME "proxy:fcgi://backend/path" (the default,
// PHP-FPM-compatible, ProxyFCGIBackendType). CONTENT_TYPE and
// CONTENT_LENGTH are only sent when the request has them.
func ApacheParams(method, requestURI, backend string) map[string]string {
	path, query := splitURI(requestURI)
	rawPath, _, _ := strings.Cut(requestURI, "?")
	return map[string]string{
		"HTTP_HOST":             "localhost",
		"HTTP_USER_AGENT":       "fcgitest",
		"HTTP_ACCEPT":           "*/*",
		"PATH":                  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SERVER_SIGNATURE":      "<address>Apache/2.4.62 (Debian) Server at localhost Port 80</address>\n",
		"SERVER_SOFTWARE":       "Apache/2.4.62 (Debian)",
		"SERVER_NAME":           "localhost",
		"SERVER_ADDR":           "127.0.0.1",
		"SERVER_PORT":           "80",
		"REMOTE_ADDR":           "127.0.0.1",
		"DOCUMENT_ROOT":         "/var/www/html",
		"REQUEST_SCHEME":        "http",
		"CONTEXT_PREFIX":        "",
		"CONTEXT_DOCUMENT_ROOT": "/var/www/html",
		"SERVER_ADMIN":          "webmaster@localhost",
		"SCRIPT_FILENAME":       "proxy:fcgi://" + backend + rawPath,
		"REMOTE_PORT":           "54321",
		"GATEWAY_INTERFACE":     "CGI/1.1",
		"SERVER_PROTOCOL":       "HTTP/1.1",
		"REQUEST_METHOD":        method,
		"QUERY_STRING":          query,
		"REQUEST_URI":           requestURI,
		"SCRIPT_NAME":           path,
	}
}

// splitURI returns the decoded path and the raw query of a request target.
// A target that does not parse keeps its raw path, as a lenient server would.
func splitURI(requestURI string) (path, query string) {
	rawPath, query, _ := strings.Cut(requestURI, "?")
	if u, err := url.ParseRequestURI(requestURI); err == nil {
		return u.Path, u.RawQuery
	}
	return rawPath, query
}
