package bctest

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// fieldModified is the field of delta queries.
const fieldModified = "lastModifiedDateTime"

// filterSpec says what the $filter of a collection accepts.
type filterSpec struct {
	eqField string // "<eqField> eq '<literal>'"; "" for none
	delta   bool   // "lastModifiedDateTime gt <DateTimeOffset>"
}

// MaxOrTerms is the most comparisons a $filter may join with "or".
const MaxOrTerms = 100

// filterTerm is one comparison, or comparisons of one field joined by "or".
type filterTerm struct {
	field  string
	op     string    // "eq" or "gt"
	values []string  // eq: the values of the string literals, distinct; one unless joined by "or"
	after  time.Time // gt
}

// filter is a conjunction of comparisons; the empty filter keeps every row.
type filter []filterTerm

// match reports whether a row with fields, last modified at modified,
// passes the filter.
func (f filter) match(fields map[string]any, modified time.Time) bool {
	for _, t := range f {
		switch t.op {
		case "eq":
			v, ok := fields[t.field].(string)
			if !ok || !slices.Contains(t.values, v) {
				return false
			}
		case "gt":
			if !modified.After(t.after) {
				return false
			}
		}
	}
	return true
}

// dateTimeOffset is the literal delta queries take: UTC, not quoted, with
// or without fractional seconds.
var dateTimeOffset = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$`)

// parseFilter parses a $filter: comparisons allowed by spec, joined by
// "and"; or up to MaxOrTerms "<spec.eqField> eq '<literal>'" joined by "or",
// which becomes one term with every value. BC rejects "or" across two
// fields; bctest also rejects "or" between other comparisons, "or" mixed
// with "and", parentheses, functions and any other operator.
func parseFilter(expr string, spec filterSpec) (filter, error) {
	toks, err := filterTokens(expr)
	if err != nil {
		return nil, err
	}
	if len(toks)%4 != 3 {
		return nil, errors.New("expected <field> <operator> <value>, joined by 'and' or 'or'")
	}
	var and, or bool
	var fields []string // distinct, in order
	for i := 0; i < len(toks); i += 4 {
		if !slices.Contains(fields, toks[i]) {
			fields = append(fields, toks[i])
		}
		if i+3 < len(toks) {
			switch toks[i+3] {
			case "and":
				and = true
			case "or":
				or = true
			default:
				return nil, fmt.Errorf("expected 'and' or 'or', not '%s'", toks[i+3])
			}
		}
	}
	n := len(toks)/4 + 1 // comparisons
	if or {
		switch {
		case len(fields) > 1:
			return nil, fmt.Errorf("'or' across different fields (%s) is not supported", strings.Join(fields, ", "))
		case and:
			return nil, errors.New("bctest does not support 'or' mixed with 'and'")
		case n > MaxOrTerms:
			return nil, fmt.Errorf("%d comparisons joined by 'or': bctest takes at most %d", n, MaxOrTerms)
		}
	}
	f := make(filter, 0, n)
	for i := 0; i < len(toks); i += 4 {
		t, err := parseTerm(toks[i], toks[i+1], toks[i+2], spec)
		if err != nil {
			return nil, err
		}
		if or && i > 0 {
			if !slices.Contains(f[0].values, t.values[0]) {
				f[0].values = append(f[0].values, t.values[0])
			}
			continue
		}
		if or && t.op != "eq" {
			if spec.eqField == "" {
				return nil, errors.New("'or' is not supported on this collection")
			}
			return nil, fmt.Errorf("bctest supports 'or' between '%s eq <string>' comparisons only", spec.eqField)
		}
		f = append(f, t)
	}
	return f, nil
}

func parseTerm(field, op, lit string, spec filterSpec) (filterTerm, error) {
	switch {
	case field == fieldModified && spec.delta:
		if op != "gt" {
			return filterTerm{}, fmt.Errorf("bctest supports '%s gt <datetime>' only, not '%s'", fieldModified, op)
		}
		if strings.HasPrefix(lit, "'") {
			return filterTerm{}, fmt.Errorf("the datetime %s must not be quoted", lit)
		}
		if !dateTimeOffset.MatchString(lit) {
			return filterTerm{}, fmt.Errorf("'%s' is not a UTC datetime such as 2026-01-02T03:04:05.678Z", lit)
		}
		t, err := time.Parse(time.RFC3339Nano, lit)
		if err != nil {
			return filterTerm{}, fmt.Errorf("'%s' is not a valid datetime", lit)
		}
		return filterTerm{field: field, op: op, after: t}, nil
	case field == spec.eqField && field != "":
		if op != "eq" {
			return filterTerm{}, fmt.Errorf("bctest supports '%s eq <string>' only, not '%s'", field, op)
		}
		v, err := unquote(lit)
		if err != nil {
			return filterTerm{}, err
		}
		return filterTerm{field: field, op: op, values: []string{v}}, nil
	}
	var can []string
	if spec.eqField != "" {
		can = append(can, "'"+spec.eqField+" eq'")
	}
	if spec.delta {
		can = append(can, "'"+fieldModified+" gt'")
	}
	if len(can) == 0 {
		return filterTerm{}, fmt.Errorf("this collection cannot be filtered")
	}
	return filterTerm{}, fmt.Errorf("the field '%s' cannot be filtered here: use %s", field, strings.Join(can, " or "))
}

// filterTokens splits a $filter at spaces outside string literals. A
// string literal is one token, its quotes included.
func filterTokens(expr string) ([]string, error) {
	var toks []string
	for i := 0; i < len(expr); {
		switch ch := expr[i]; ch {
		case ' ':
			i++
		case '(', ')':
			return nil, errors.New("parentheses and functions are not supported")
		case '\'':
			j := i + 1
			for {
				k := strings.IndexByte(expr[j:], '\'')
				if k < 0 {
					return nil, errors.New("a string literal is not closed")
				}
				j += k + 1
				if j < len(expr) && expr[j] == '\'' { // a doubled quote
					j++
					continue
				}
				break
			}
			if j < len(expr) && expr[j] != ' ' {
				return nil, errors.New("a single quote inside a string literal must be doubled")
			}
			toks = append(toks, expr[i:j])
			i = j
		default:
			j := i
			for j < len(expr) && !strings.ContainsRune(" ()'", rune(expr[j])) {
				j++
			}
			toks = append(toks, expr[i:j])
			i = j
		}
	}
	if len(toks) == 0 {
		return nil, errors.New("the filter is empty")
	}
	return toks, nil
}
