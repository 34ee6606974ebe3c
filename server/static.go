package server

import (
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// static serves files under DocumentRoot for the reverse-proxy set-up, as the
// POE server's HTTP side did: DirectoryIndex files for directories, and
// Expires/Cache-Control by MIME type from TypeExpires. http.Dir confines every
// path to the root (".." cannot climb out), dot-files are not served, and
// neither is a file a symbolic link leads out of the root.
func (s *Server) static() http.Handler {
	root := insideRoot{http.Dir(s.opts.DocumentRoot), s.opts.DocumentRoot}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := path.Clean("/" + r.URL.Path)
		for _, part := range strings.Split(name, "/") {
			if strings.HasPrefix(part, ".") {
				http.NotFound(w, r)
				return
			}
		}
		f, st, err := openFile(root, name)
		if err == nil && st.IsDir() {
			_ = f.Close()
			if !strings.HasSuffix(r.URL.Path, "/") {
				http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
				return
			}
			err = os.ErrNotExist // no index file: no directory listing
			for _, idx := range s.opts.DirectoryIndex {
				if f, st, err = openFile(root, path.Join(name, idx)); err == nil {
					if !st.IsDir() {
						name = path.Join(name, idx)
						break
					}
					_ = f.Close()
					err = os.ErrNotExist
				}
			}
		}
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer func() { _ = f.Close() }()
		s.setExpires(w.Header(), name)
		http.ServeContent(w, r, name, st.ModTime(), f)
	})
}

// insideRoot opens only files whose real path (symbolic links followed)
// is under the root's real path.
type insideRoot struct {
	http.Dir
	root string
}

func (d insideRoot) Open(name string) (http.File, error) {
	root, err := filepath.EvalSymlinks(d.root)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(path.Clean("/"+name))))
	if err != nil {
		return nil, err
	}
	if real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return nil, os.ErrNotExist
	}
	return d.Dir.Open(name)
}

func openFile(root http.FileSystem, name string) (http.File, os.FileInfo, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// setExpires applies TypeExpires for the file's MIME type (by extension;
// "text/html" also matches "text/html; charset=utf-8").
func (s *Server) setExpires(h http.Header, name string) {
	if len(s.opts.TypeExpires) == 0 {
		return
	}
	typ, _, _ := mime.ParseMediaType(mime.TypeByExtension(path.Ext(name)))
	d, ok := s.opts.TypeExpires[typ]
	if !ok {
		return
	}
	h.Set("Expires", time.Now().Add(d).UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "max-age="+strconv.Itoa(int(d.Seconds())))
}
