package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Environment overrides are derived from the `yaml` tags: a variable's name
// is a prefix plus the path of yaml names upper-cased and joined with '_'.
// A field's `env` tag adds a conventional name that wins over the derived
// one ("NATS_URL"), or "-" to have no variable. An empty variable counts as
// unset.

// applyEnv applies the overrides of the global settings and of every
// subscription that has a valid name, and reports variables that two
// subscriptions would share.
func applyEnv(st *state, cfg *Config, env func(string) (string, bool)) {
	envStruct(st, env, "", "BCSYNC_", reflect.ValueOf(cfg).Elem())
	for i := range cfg.Subscriptions {
		s := &cfg.Subscriptions[i]
		if !validName(s.Name) {
			continue
		}
		envStruct(st, env, fmt.Sprintf("subscriptions[%d]", i), s.EnvPrefix(), reflect.ValueOf(s).Elem())
	}
	checkEnvCollisions(st, cfg)
}

// envStruct applies the overrides of one struct's fields, recursing into
// nested structs; slices are skipped.
func envStruct(st *state, env func(string) (string, bool), path, prefix string, v reflect.Value) {
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		fp := joinPath(path, f.name)
		name := prefix + strings.ToUpper(f.name)
		switch {
		case fv.Kind() == reflect.Slice || f.env == "-":
			continue
		case fv.Kind() == reflect.Struct:
			envStruct(st, env, fp, name+"_", fv)
			continue
		}
		names := []string{name}
		if f.env != "" {
			names = []string{f.env, name}
		}
		for _, n := range names {
			val, ok := env(n)
			if !ok || val == "" {
				continue
			}
			st.mark(fp, origin{env: n})
			if problem, fix := setScalar(fv, val); problem != "" {
				st.add(fp, problem, fix+", or unset "+n)
			}
			break
		}
	}
}

// envNames lists the override variables of a struct type, by path.
func envNames(path, prefix string, t reflect.Type, out map[string]string) {
	for _, f := range fieldsOf(t) {
		ft := t.Field(f.index).Type
		fp := joinPath(path, f.name)
		name := prefix + strings.ToUpper(f.name)
		switch {
		case ft.Kind() == reflect.Slice || f.env == "-":
		case ft.Kind() == reflect.Struct:
			envNames(fp, name+"_", ft, out)
		default:
			out[name] = fp
			if f.env != "" {
				out[f.env] = fp
			}
		}
	}
}

// checkEnvCollisions reports a subscription whose environment variables
// would also set another subscription's settings or a global setting
// (e.g. "a-b" and "a_b", or "contoso" and "contoso_ipaas", which share
// BCSYNC_CONTOSO_IPAAS_CLIENT_ID).
func checkEnvCollisions(st *state, cfg *Config) {
	global := map[string]string{}
	envNames("", "BCSYNC_", reflect.TypeFor[Config](), global)
	type owner struct {
		sub  int
		path string
	}
	owners := map[string]owner{}
	for n, p := range global {
		owners[n] = owner{sub: -1, path: p}
	}
	for i := range cfg.Subscriptions {
		s := &cfg.Subscriptions[i]
		if !validName(s.Name) {
			continue
		}
		names := map[string]string{}
		envNames("", s.EnvPrefix(), reflect.TypeFor[Subscription](), names)
		names[s.EnvPrefix()+"CLIENT_SECRET"] = "client_secret_env"
		names[s.EnvPrefix()+"IPAAS_API_KEY"] = "ipaas.api_key_env"
		names[s.EnvPrefix()+"WEBHOOK_CLIENT_STATE"] = "webhook.client_state_env"
		reported := map[int]bool{}
		for j := range i {
			o := &cfg.Subscriptions[j]
			if o.Name != s.Name && validName(o.Name) && o.EnvPrefix() == s.EnvPrefix() {
				reported[j] = true
				st.add(fmt.Sprintf("subscriptions[%d].name", i),
					fmt.Sprintf("shares its environment variables (%s*) with subscription %q", s.EnvPrefix(), o.Name),
					"rename one of them: names that differ only in '-' and '_' give the same variable names")
			}
		}
		for _, n := range slices.Sorted(maps.Keys(names)) {
			o, taken := owners[n]
			if !taken {
				owners[n] = owner{sub: i, path: names[n]}
				continue
			}
			if o.sub >= 0 && cfg.Subscriptions[o.sub].Name == s.Name {
				continue // a duplicate name, reported as such
			}
			if reported[o.sub] {
				continue
			}
			reported[o.sub] = true
			other := "the global setting " + o.path
			if o.sub >= 0 {
				other = fmt.Sprintf("%s of subscription %q", o.path, cfg.Subscriptions[o.sub].Name)
			}
			st.add(fmt.Sprintf("subscriptions[%d].name", i),
				fmt.Sprintf("environment variable %s would set both %s of this subscription and %s", n, names[n], other),
				"rename one of them: the names, upper-cased with '-' as '_', must not give the same variable names")
		}
	}
}
