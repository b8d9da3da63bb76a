package query

import "os"

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "spotlight-query-test") }
func osRemoveAll(d string)         { _ = os.RemoveAll(d) }
func osExit(code int)              { os.Exit(code) }
