// Package upstream faces the origins: Decoder reads a text/event-stream the
// way the HTML standard's "interpreting an event stream" section says a
// browser does, Encoder writes one that any such reader decodes back to the
// same events, and Client holds one origin stream for as long as it is
// wanted, reconnecting with backoff and resending Last-Event-ID.
//
// The three are independent: the proxy uses Client (which uses Decoder) for
// origins and Encoder for the streams it serves to devices.
package upstream

import (
	"errors"
	"fmt"
	"io"
)

var (
	// ErrTooLarge: a line or an event's data is longer than the decoder's
	// MaxSize. The stream cannot be resynchronised, so the decoder stops and
	// the client drops that connection.
	ErrTooLarge = errors.New("upstream: line or event too large")
	// ErrNoContent: the origin answered 204 No Content, which the standard
	// defines as "stop reconnecting". Client.Run returns it.
	ErrNoContent = errors.New("upstream: origin answered 204 No Content")
	// ErrBadStatus: the origin answered a status other than 200 or 204.
	// Wrapped by *ResponseError.
	ErrBadStatus = errors.New("upstream: unexpected status")
	// ErrBadContentType: the origin answered 200 with a content type other
	// than text/event-stream. Wrapped by *ResponseError.
	ErrBadContentType = errors.New("upstream: content type is not text/event-stream")
	// ErrStalled: no byte (not even a comment) arrived for ReadTimeout.
	ErrStalled = errors.New("upstream: origin stalled")
	// ErrUnencodable: an event whose ID holds CR, LF or NUL, or whose type
	// holds CR or LF, cannot be written as an event stream.
	ErrUnencodable = errors.New("upstream: event cannot be encoded")
	// ErrBadURL: the Client's URL is not an absolute http or https URL.
	ErrBadURL = errors.New("upstream: bad origin URL")

	// errEnded is why a connection the origin closed normally is retried.
	errEnded = fmt.Errorf("upstream: origin ended the stream: %w", io.EOF)
)
