package bolt_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The store owns no goroutine: nothing may be left behind by Open, the
// group commits or Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
