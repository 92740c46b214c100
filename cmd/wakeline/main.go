// Command wakeline is a connectionless push gateway: it holds Server-Sent
// Events connections for sleeping devices and wakes them with Web Push.
package main

import (
	"fmt"
	"os"
)

// version is stamped by the build with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("wakeline", version)
		return
	}
	fmt.Fprintln(os.Stderr, "wakeline: not yet wired; see README.md")
	os.Exit(2)
}
