package aethercache

import (
	"os/exec"
	"strings"
	"testing"
)

// The sources, including the generated constants.go, are gofmt-clean.
func TestGofmt(t *testing.T) {
	gofmt, err := exec.LookPath("gofmt")
	if err != nil {
		t.Skip("gofmt not installed")
	}
	out, err := exec.Command(gofmt, "-l", ".").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("gofmt -l: %v\n%s", err, out)
	}
}
