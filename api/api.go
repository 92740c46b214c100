// Package api holds the OpenAPI 3.1 description of wakeline's REST API,
// openapi.yaml, embedded as Spec so that the gateway serves the document it
// was built with at /v1/openapi.yaml.
package api

import _ "embed" // for go:embed

// ContentType is the media type to serve Spec with (RFC 9512).
const ContentType = "application/yaml"

// Spec is the OpenAPI 3.1 document, openapi.yaml, as built into the binary.
// Treat it as read-only: it is shared by everything that serves it.
//
//go:embed openapi.yaml
var Spec []byte
