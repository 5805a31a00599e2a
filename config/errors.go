package config

import (
	"fmt"
	"strconv"
	"strings"
)

// FieldError is one problem with one setting.
type FieldError struct {
	// Path names the setting: "nats.url", "subscriptions.contoso.tenant_id",
	// or "subscriptions[1].name" while a subscription has no usable name.
	// Empty for a problem with the file as a whole.
	Path string
	// Line is the line of the file that set the value; 0 when the value did
	// not come from the file.
	Line int
	// EnvVar is the environment variable that set the value, if any.
	EnvVar string
	// Problem says what is wrong, e.g. "missing".
	Problem string
	// Fix says what to do about it.
	Fix string
}

// Error formats the problem on one line: "path (line 7): problem — fix".
// It never holds a secret value.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Path == "" {
		b.WriteString("file")
	} else {
		b.WriteString(e.Path)
	}
	switch {
	case e.EnvVar != "":
		b.WriteString(" (from $" + e.EnvVar + ")")
	case e.Line > 0:
		b.WriteString(" (line " + strconv.Itoa(e.Line) + ")")
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	if e.Fix != "" {
		b.WriteString(" — ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// ValidationError lists every problem found in a configuration.
type ValidationError struct {
	// File is the path given to Load; empty for Parse.
	File string
	// Problems holds at least one problem, in file order where possible.
	Problems []*FieldError
}

// Error gives a header line, then one line per problem.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	if len(e.Problems) == 1 {
		b.WriteString("1 problem:")
	} else {
		fmt.Fprintf(&b, "%d problems:", len(e.Problems))
	}
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems, so that errors.As finds a *FieldError.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// ParseError is a file that is not valid YAML.
type ParseError struct {
	File   string // the path given to Load; empty for Parse
	Line   int    // 0 when unknown
	Column int    // 0 when unknown
	// Message is the YAML parser's message. The file's text is never
	// quoted beyond what the message itself names.
	Message string
}

// Error implements error.
func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d column %d: ", e.Line, e.Column)
	}
	b.WriteString("not valid YAML: ")
	b.WriteString(e.Message)
	return b.String()
}
