// Package wakeline holds what the gateway serves from files: the browser
// client (clients/js) and the example page (examples/web), embedded for
// `wakeline demo`. It lives at the module root because go:embed only reaches
// files below the embedding package, and both trees are here.
package wakeline

import (
	"embed"
	"io/fs"
	"net/http"
)

// Web holds the browser client of clients/js and the page of examples/web
// (its html and js only: the directory also holds the page's browser test).
//
//go:embed clients/js/wakeline.js clients/js/sw.js clients/js/wakeline.d.ts examples/web/*.html examples/web/*.js
var Web embed.FS

// WebHandler serves the example page at /demo/ and the browser client at
// /demo/clients/js/ (where the page imports it from, so that the page and
// its service worker share one origin and scope), and hands every other
// path to next, normally the gateway's API handler.
func WebHandler(next http.Handler) http.Handler {
	// Both directories are embedded above, so Sub cannot fail.
	page, _ := fs.Sub(Web, "examples/web")
	client, _ := fs.Sub(Web, "clients/js")
	mux := http.NewServeMux()
	mux.Handle("/demo/clients/js/", http.StripPrefix("/demo/clients/js/", http.FileServerFS(client)))
	mux.Handle("/demo/", http.StripPrefix("/demo/", http.FileServerFS(page)))
	mux.Handle("/", next)
	return mux
}
