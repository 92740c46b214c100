package push_test

import (
	"strings"
	"testing"

	"github.com/spf13/viper"

	"github.com/wakeline/wakeline/push"
)

func TestGenerateVAPIDKeysAndSnippet(t *testing.T) {
	a, err := push.GenerateVAPIDKeys()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := push.GenerateVAPIDKeys()
	if a == b || len(a.Public) != 87 || len(a.Private) != 43 {
		t.Fatalf("keys %d/%d bytes of text, or not fresh", len(a.Public), len(a.Private))
	}
	if _, err := push.NewSender(push.Config{VAPIDPublicKey: a.Public, VAPIDPrivateKey: a.Private, Subject: subject}, nil, nil); err != nil {
		t.Fatalf("generated keys refused: %v", err)
	}
	snippet := push.VAPIDSnippet(a)
	if !strings.HasPrefix(snippet, "push:\n  vapid_public_key: ") || !strings.HasSuffix(snippet, "\n") {
		t.Fatalf("snippet %q", snippet)
	}
	// What the config loader reads back.
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(strings.NewReader(snippet)); err != nil {
		t.Fatal(err)
	}
	if v.GetString("push.vapid_public_key") != a.Public || v.GetString("push.vapid_private_key") != a.Private {
		t.Fatalf("read back %v", v.AllSettings())
	}
}
