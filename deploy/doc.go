// Package deploy holds the deployment examples of wakeline: the Kubernetes
// manifests under kubernetes/ (a sidecar on bolt, several replicas on
// Redis). It has no code; its tests decode every manifest strictly into the
// Kubernetes API types and check what the gateway needs of them, and check
// that the Dockerfile builds the way the Makefile does.
package deploy
