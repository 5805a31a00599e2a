package config

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// The file is decoded by walking the YAML syntax tree against the Go types
// (through their `yaml` tags) rather than by a general-purpose decoder, so
// that every unknown field, inline secret and badly typed value is reported
// at once, each with its path and line, and so that Parse knows which
// settings the file set (a number the file sets to 0 is a problem, not a
// request for the default).

// origin is where a setting's value came from.
type origin struct {
	line int    // line in the file, or 0
	env  string // environment variable, or ""
}

// state carries one parse: where each setting came from and the problems
// found so far. Paths use indexes ("subscriptions[0].tenant_id") until
// result rewrites them with names.
type state struct {
	file     string
	set      map[string]origin
	problems []*FieldError
	flagged  map[string]bool
}

func newState(file string) *state {
	return &state{file: file, set: map[string]origin{}, flagged: map[string]bool{}}
}

// mark records that path was set, and where.
func (st *state) mark(path string, o origin) { st.set[path] = o }

// isSet reports whether the file or the environment set path.
func (st *state) isSet(path string) bool { _, ok := st.set[path]; return ok }

// add records a problem with path, once per path: the first problem found
// with a setting is the one reported.
func (st *state) add(path, problem, fix string) {
	o := st.set[path]
	st.addAt(path, o, problem, fix)
}

func (st *state) addAt(path string, o origin, problem, fix string) {
	if st.flagged[path] {
		return
	}
	st.flagged[path] = true
	st.problems = append(st.problems, &FieldError{Path: path, Line: o.line, EnvVar: o.env, Problem: problem, Fix: fix})
}

// result returns nil or a *ValidationError whose paths name each
// subscription by its name when the name is valid and unique.
func (st *state) result(cfg *Config) error {
	if len(st.problems) == 0 {
		return nil
	}
	// Global problems first, then each subscription's, in file order; the
	// sort is stable, so each group keeps the order problems were found in.
	slices.SortStableFunc(st.problems, func(a, b *FieldError) int {
		return cmp.Compare(subscriptionIndex(a.Path), subscriptionIndex(b.Path))
	})
	count := map[string]int{}
	for _, s := range cfg.Subscriptions {
		count[s.Name]++
	}
	for _, p := range st.problems {
		i := subscriptionIndex(p.Path)
		if i < 0 || i >= len(cfg.Subscriptions) {
			continue
		}
		name := cfg.Subscriptions[i].Name
		if validName(name) && count[name] == 1 {
			p.Path = "subscriptions." + name + p.Path[strings.IndexByte(p.Path, ']')+1:]
		}
	}
	return &ValidationError{File: st.file, Problems: st.problems}
}

// subscriptionIndex returns i for a path below "subscriptions[i]", and -1
// for any other path.
func subscriptionIndex(path string) int {
	rest, ok := strings.CutPrefix(path, "subscriptions[")
	if !ok {
		return -1
	}
	end := strings.IndexByte(rest, ']')
	if end < 0 {
		return -1
	}
	i, err := strconv.Atoi(rest[:end])
	if err != nil {
		return -1
	}
	return i
}

// forbiddenKeys are keys that must never appear in the file because they
// would hold a secret, by the type of the mapping they appear in.
var forbiddenKeys = map[reflect.Type]map[string][2]string{
	reflect.TypeFor[Subscription](): {
		"client_secret": {"inline secret: never put the client secret in the file", "use client_secret_env or client_secret_file, remove this line and rotate the secret if the file was shared"},
	},
	reflect.TypeFor[IPaaS](): {
		"api_key": {"inline secret: never put the API key in the file", "use api_key_env or api_key_file, remove this line and rotate the key if the file was shared"},
	},
}

var durationType = reflect.TypeFor[time.Duration]()

// field is a struct field that the file may set.
type field struct {
	index int
	name  string // yaml name
	def   string // `default` tag
	env   string // `env` tag: an extra variable name, or "-" for none
}

var fieldCache sync.Map // reflect.Type -> []field

// fieldsOf lists the settable fields of a struct type in declaration order.
func fieldsOf(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if !sf.IsExported() || name == "" || name == "-" {
			continue
		}
		fs = append(fs, field{index: i, name: name, def: sf.Tag.Get("default"), env: sf.Tag.Get("env")})
	}
	fieldCache.Store(t, fs)
	return fs
}

func lookupField(t reflect.Type, name string) (field, bool) {
	for _, f := range fieldsOf(t) {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode parses data into cfg. It returns a *ParseError when data is not
// YAML; every other problem goes into the state.
func decode(file string, data []byte, cfg *Config) (*state, error) {
	st := newState(file)
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, newParseError(file, err)
	}
	var docs []*ast.DocumentNode
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		return st, nil
	}
	if len(docs) > 1 {
		st.addAt("", origin{line: nodeLine(docs[1].Body)},
			fmt.Sprintf("the file holds %d YAML documents", len(docs)),
			"keep one document: remove the extra '---' sections")
	}
	d := &decoder{st: st, anchors: map[string]ast.Node{}}
	for _, n := range ast.Filter(ast.AnchorType, docs[0].Body) {
		if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil && a.Name.GetToken() != nil {
			d.anchors[a.Name.GetToken().Value] = a.Value
		}
	}
	d.value("", docs[0].Body, reflect.ValueOf(cfg).Elem())
	return st, nil
}

func newParseError(file string, err error) *ParseError {
	pe := &ParseError{File: file, Message: err.Error()}
	var ye yaml.Error
	if errors.As(err, &ye) {
		// GetMessage leaves out the source excerpt that Error adds, which
		// could show a neighbouring line holding a secret.
		pe.Message = ye.GetMessage()
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			pe.Line, pe.Column = tk.Position.Line, tk.Position.Column
		}
	} else if i := strings.IndexByte(pe.Message, '\n'); i >= 0 {
		pe.Message = pe.Message[:i]
	}
	return pe
}

func nodeLine(n ast.Node) int {
	if n == nil {
		return 0
	}
	if _, ok := n.(*ast.DocumentNode); ok {
		return 0 // its GetToken panics on an empty body
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

type decoder struct {
	st      *state
	anchors map[string]ast.Node
	depth   int  // nested mappings being decoded
	work    int  // values decoded so far
	tooMuch bool // the limits below were hit
}

// Limits that stop an alias that refers to itself, or aliases that expand
// exponentially ("billion laughs"). A real file is far below both.
const (
	maxDepth = 16
	maxWork  = 100_000
)

// enter counts a value and reports false when a limit is hit.
func (d *decoder) enter(line int) bool {
	d.work++
	if d.depth < maxDepth && d.work <= maxWork {
		return true
	}
	if !d.tooMuch {
		d.tooMuch = true
		d.st.problems = append(d.st.problems, &FieldError{Line: line,
			Problem: "anchors and aliases nest too deeply or expand too far (does an alias refer to itself?)",
			Fix:     "write the settings out instead of through aliases"})
	}
	return false
}

// resolve looks through tags, anchors and aliases. It returns nil for a
// null value.
func (d *decoder) resolve(n ast.Node) ast.Node {
	for range 64 {
		switch x := n.(type) {
		case nil:
			return nil
		case *ast.TagNode:
			n = x.Value
		case *ast.AnchorNode:
			n = x.Value
		case *ast.AliasNode:
			if x.Value == nil || x.Value.GetToken() == nil {
				return nil
			}
			n = d.anchors[x.Value.GetToken().Value]
		case *ast.NullNode:
			return nil
		default:
			return n
		}
	}
	return nil
}

// value decodes n into v, which is a struct, a slice of structs or a
// scalar (string, integer, time.Duration).
func (d *decoder) value(path string, n ast.Node, v reflect.Value) {
	line := nodeLine(n)
	n = d.resolve(n)
	if n == nil {
		return
	}
	switch {
	case v.Kind() == reflect.Struct:
		d.structValue(path, n, v)
	case v.Kind() == reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			d.st.addAt(path, origin{line: line}, "must be a list",
				"start each entry with '- ' on its own line (see the example configuration)")
			return
		}
		// Set, even empty: an explicit [] is not a missing list, which
		// takes the default.
		d.st.mark(path, origin{line: line})
		for i, el := range seq.Values {
			elem := reflect.New(v.Type().Elem()).Elem()
			d.value(fmt.Sprintf("%s[%d]", path, i), el, elem)
			v.Set(reflect.Append(v, elem))
		}
	default:
		if !d.enter(line) {
			return
		}
		text, ok := scalarText(n)
		d.st.mark(path, origin{line: line})
		if !ok {
			d.st.add(path, "must be a single value, not a list or a mapping", "write it as `key: value` on one line")
			return
		}
		if problem, fix := setScalar(v, text); problem != "" {
			d.st.add(path, problem, fix)
		}
	}
}

func (d *decoder) structValue(path string, n ast.Node, v reflect.Value) {
	if !d.enter(nodeLine(n)) {
		return
	}
	d.depth++
	defer func() { d.depth-- }()
	var pairs []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	default:
		what := "settings"
		if path != "" {
			what = "the " + path[strings.LastIndexByte(path, '.')+1:] + " settings"
		}
		d.st.addAt(path, origin{line: nodeLine(n)}, "must be a mapping",
			"write "+what+" as indented `key: value` lines (see the example configuration)")
		return
	}
	// Merge keys (<<: *anchor) first, so that the mapping's own keys win.
	for _, p := range pairs {
		if p == nil || p.Key == nil || !p.Key.IsMergeKey() {
			continue
		}
		switch m := d.resolve(p.Value).(type) {
		case *ast.SequenceNode:
			for _, el := range m.Values {
				if el := d.resolve(el); el != nil {
					d.structValue(path, el, v)
				}
			}
		case nil:
		default:
			d.structValue(path, m, v)
		}
	}
	for _, p := range pairs {
		if p == nil || p.Key == nil || p.Key.IsMergeKey() {
			continue
		}
		line := nodeLine(p.Key)
		key, ok := keyName(p.Key)
		if !ok {
			d.st.addAt(path, origin{line: line}, "has a key that is not a plain name",
				"write each setting as `name: value`")
			continue
		}
		f, ok := lookupField(v.Type(), key)
		if !ok {
			d.unknown(path, key, line, v.Type())
			continue
		}
		d.value(joinPath(path, key), p.Value, v.Field(f.index))
	}
}

// unknown reports a key that the type does not have.
func (d *decoder) unknown(path, key string, line int, t reflect.Type) {
	if pf, ok := forbiddenKeys[t][key]; ok {
		d.st.addAt(joinPath(path, key), origin{line: line}, pf[0], pf[1])
		return
	}
	shown := key
	if !plainKey(key) {
		if len(shown) > 40 {
			shown = shown[:40] + "..."
		}
		shown = strconv.Quote(shown)
	}
	var names []string
	for _, f := range fieldsOf(t) {
		names = append(names, f.name)
	}
	fix := "remove it or correct its spelling; the fields here are " + strings.Join(names, ", ")
	if s := closest(key, names); s != "" {
		fix = fmt.Sprintf("did you mean %q? Otherwise remove it", s)
	}
	d.st.addAt(joinPath(path, shown), origin{line: line}, "unknown field", fix)
}

func plainKey(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// closest returns the name nearest to key by edit distance, if it is near
// enough to be a likely typo.
func closest(key string, names []string) string {
	best, bestD := "", 1<<30
	k := strings.ToLower(key)
	for _, n := range names {
		if dist := editDistance(k, n); dist < bestD {
			best, bestD = n, dist
		}
	}
	if bestD <= 2 || (bestD <= 3 && len(key) >= 8) {
		return best
	}
	return ""
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func keyName(k ast.MapKeyNode) (string, bool) {
	switch x := k.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.MappingKeyNode, *ast.LiteralNode:
		return "", false
	}
	if tk := k.GetToken(); tk != nil {
		return tk.Value, true
	}
	return "", false
}

// scalarText returns a scalar's text: the unquoted string, or a number's
// or boolean's source text.
func scalarText(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		if x.Value == nil {
			return "", true
		}
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		if tk := n.GetToken(); tk != nil {
			return tk.Value, true
		}
	}
	return "", false
}

// setScalar sets v from text. It returns a problem and its fix when text
// does not fit v's type. The problem never quotes text.
func setScalar(v reflect.Value, text string) (problem, fix string) {
	text = strings.TrimSpace(text)
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(text)
		if err != nil {
			return "not a duration", "write it as a number with a unit, such as 90s, 5m or 1h30m"
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(text)
	case v.Kind() == reflect.Bool:
		switch strings.ToLower(text) {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			return "not a boolean", "write true or false"
		}
	case v.CanInt():
		n, err := strconv.ParseInt(text, 10, v.Type().Bits())
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return "number too large", "use a smaller whole number"
			}
			return "not a whole number", "write it as digits only, such as 10"
		}
		v.SetInt(n)
	default:
		return "cannot be set", "remove it"
	}
	return "", ""
}
