# wakeline build targets. The Dockerfile runs the same build command.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test lint bench fuzz

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/wakeline ./cmd/wakeline

test:
	go test -race ./...

lint:
	test -z "$$(gofmt -l .)"
	go vet ./...

bench:
	go test -run '^$$' -bench . -benchmem ./...

fuzz:
	go test -run '^$$' -fuzz FuzzRoundTrip -fuzztime 30s ./upstream
	go test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./upstream
	go test -run '^$$' -fuzz FuzzRequests -fuzztime 30s ./proxy
	go test -run '^$$' -fuzz FuzzLoad -fuzztime 30s ./config
