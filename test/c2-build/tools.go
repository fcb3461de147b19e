//go:build tools

// Package c2build only pins the C2 server and CLI that scripts/build-c2.sh compiles; nothing here runs.
package c2build

import (
	_ "github.com/teserakt-io/c2/cmd/c2"
	_ "github.com/teserakt-io/c2/cmd/c2cli"
)
