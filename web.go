// Package wakeline holds what the gateway serves from files: the browser
// client (clients/js) and the example page (examples/web), embedded for
// `wakeline demo`. It lives at the module root because go:embed only reaches
// files below the embedding package, and both trees are here.
package wakeline

import "embed"

// Web holds clients/js and examples/web.
//
//go:embed clients/js/wakeline.js clients/js/sw.js clients/js/wakeline.d.ts examples/web
var Web embed.FS
