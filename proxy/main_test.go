package proxy_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops its gateway: no goroutine may outlive it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
