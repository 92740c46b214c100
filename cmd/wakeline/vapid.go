package main

import (
	"fmt"
	"io"

	"github.com/wakeline/wakeline/push"
)

// runVapid prints a fresh VAPID key pair to out as a YAML snippet for the
// push section.
func runVapid(out io.Writer) error {
	keys, err := push.GenerateVAPIDKeys()
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(out, push.VAPIDSnippet(keys))
	return err
}
