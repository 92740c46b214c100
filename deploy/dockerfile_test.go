package deploy_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
	stage     int // 0 for the first FROM's stage
}

func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	stage, cur := -1, ""
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\r\n")
		if t := strings.TrimSpace(line); cur == "" && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if next, ok := strings.CutSuffix(line, "\\"); ok {
			cur += next + " "
			continue
		}
		cur += line
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur), " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd, strings.Join(strings.Fields(args), " "), stage})
		cur = ""
	}
	return out
}

// makeBuildCommand is the Makefile's build recipe with its variables
// expanded the way the Dockerfile spells them ($VERSION from a build arg).
func makeBuildCommand(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	mk := string(data)
	ldflags := regexp.MustCompile(`(?m)^LDFLAGS\s*:?=\s*(.*)$`).FindStringSubmatch(mk)
	recipe := regexp.MustCompile(`(?m)^build:.*\n\t(.*)$`).FindStringSubmatch(mk)
	if ldflags == nil || recipe == nil {
		t.Fatal("Makefile: no LDFLAGS or build recipe found")
	}
	cmd := strings.ReplaceAll(recipe[1], "$(LDFLAGS)", strings.TrimSpace(ldflags[1]))
	return strings.ReplaceAll(cmd, "$(VERSION)", "$VERSION")
}

func TestDockerfile(t *testing.T) {
	ins := readDockerfile(t)
	last := ins[len(ins)-1].stage
	final := func(cmd string) []string {
		var out []string
		for _, in := range ins {
			if in.stage == last && in.cmd == cmd {
				out = append(out, in.args)
			}
		}
		return out
	}
	if last < 1 {
		t.Fatal("not a multi-stage build")
	}
	if ins[0].cmd != "FROM" || !strings.HasPrefix(ins[0].args, "golang:1.26 ") {
		t.Errorf("builder: %s %s, want FROM golang:1.26", ins[0].cmd, ins[0].args)
	}
	if got := final("FROM"); !slices.Equal(got, []string{"gcr.io/distroless/static-debian12:nonroot"}) {
		t.Errorf("final image %v", got)
	}

	// The same build as `make build`, writing to /out instead of bin/.
	want := strings.Replace(makeBuildCommand(t), "-o bin/wakeline", "-o /out/wakeline", 1)
	if !slices.ContainsFunc(ins, func(in instruction) bool { return in.cmd == "RUN" && withoutMounts(in.args) == want }) {
		t.Errorf("no RUN of the Makefile's build command:\n  %s", want)
	}
	if !slices.ContainsFunc(ins, func(in instruction) bool { return in.cmd == "ARG" && strings.HasPrefix(in.args, "VERSION") }) {
		t.Error("no ARG VERSION for the version stamp")
	}

	for cmd, want := range map[string]string{
		"USER":        "65532:65532",
		"WORKDIR":     imageWorkdir,
		"VOLUME":      `["` + imageWorkdir + `"]`,
		"EXPOSE":      "8080",
		"ENV":         "WAKELINE_LISTEN=0.0.0.0:8080",
		"ENTRYPOINT":  `["/wakeline"]`,
		"CMD":         `["serve"]`,
		"HEALTHCHECK": `--interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/wakeline", "healthcheck"]`,
	} {
		if got := final(cmd); !slices.Equal(got, []string{want}) {
			t.Errorf("final stage %s %v, want %s", cmd, got, want)
		}
	}
}

// withoutMounts drops RUN's --mount flags (build caches) before the command.
func withoutMounts(args string) string {
	for strings.HasPrefix(args, "--mount=") {
		_, args, _ = strings.Cut(args, " ")
	}
	return args
}

// TestDockerignore: the build context keeps what the build needs and
// drops what would leak or bloat it.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for line := range strings.Lines(string(data)) {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			pats = append(pats, strings.Trim(l, "/"))
		}
	}
	for _, must := range []string{".git", "bin", "**/*.db"} {
		if !slices.Contains(pats, must) {
			t.Errorf(".dockerignore does not exclude %s", must)
		}
	}
	for _, keep := range []string{"go.mod", "go.sum", "cmd", "api", "config", "proxy", "push", "store", "upstream", "clients", "examples", "*", "**"} {
		if slices.Contains(pats, keep) {
			t.Errorf(".dockerignore excludes %s, which the build needs", keep)
		}
	}
}
