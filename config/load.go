package config

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path (or at $WAKELINE_CONFIG when path is
// ""), over Default, then applies WAKELINE_* environment overrides. With
// neither a path nor WAKELINE_CONFIG it returns the embedded defaults plus
// overrides, with Source "".
//
// Errors name the key: unknown keys (wrapping ErrUnknownKey), values of the
// wrong type, durations without a unit. Load does not call Validate.
//
// The upstreams list can only come from the file: an environment variable
// cannot describe a list of objects.
func Load(path string) (Config, error) {
	if path == "" {
		path = os.Getenv(EnvConfigFile)
	}
	raw := map[string]any{}
	if path != "" {
		var err error
		if raw, err = readYAML(path); err != nil {
			return Config{}, err
		}
	}
	cfg, err := decode(raw)
	if err != nil {
		return Config{}, err
	}
	cfg.Source = path
	return cfg, nil
}

// readYAML reads a YAML mapping, bounded by MaxFileSize.
func readYAML(path string) (map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrFileTooLarge, path, MaxFileSize)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	switch doc := normalize(doc).(type) {
	case nil: // empty file: defaults
		return map[string]any{}, nil
	case map[string]any:
		return doc, nil
	default:
		return nil, fmt.Errorf("config: %s: the top level must be a mapping of keys, got %s", path, yamlKind(doc))
	}
}

// normalize turns the map[any]any yaml gives for mappings with non-string
// keys into map[string]any, so the rest of Load sees one shape.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalize(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = normalize(e)
		}
		return v
	default:
		return v
	}
}

// decode merges raw over Default and the environment over both.
func decode(raw map[string]any) (Config, error) {
	cfg := Default()
	// Viper folds key case, so two keys differing only in case would
	// silently shadow each other; and it lower-cases header names, so their
	// case is kept aside here first.
	if errs := foldedDuplicates(raw, ""); len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	headerNames, n, err := upstreamShape(raw)
	if err != nil {
		return Config{}, err
	}
	// Found here rather than by the decoder, which stops noting unused keys
	// of a mapping as soon as one of its values fails to decode.
	errs := unknownKeys(raw, reflect.TypeFor[Config](), "")
	// Each entry starts from DefaultUpstream so that a partial retry or
	// buffer mapping keeps the other defaults; the decoder fills elements
	// in place.
	for range n {
		cfg.Upstreams = append(cfg.Upstreams, DefaultUpstream())
	}

	v := viper.New()
	if err := v.MergeConfigMap(raw); err != nil { // lower-cases raw in place
		return Config{}, fmt.Errorf("config: %w", err)
	}
	for _, key := range envKeys() {
		if err := v.BindEnv(key, EnvName(key)); err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	err = v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(durationHook, stringListHook)
	})
	if err != nil {
		errs = append(errs, fieldErrors(err)...)
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	for i := range cfg.Upstreams {
		cfg.Upstreams[i].Headers = restoreCase(cfg.Upstreams[i].Headers, headerNames[i])
	}
	return cfg, nil
}

// foldedDuplicates reports mapping keys that differ only in case, at any
// depth. Such keys are one key to viper, and one header to HTTP.
func foldedDuplicates(v any, path string) []error {
	var errs []error
	switch v := v.(type) {
	case map[string]any:
		seen := make(map[string]string, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			lower := strings.ToLower(k)
			if first, dup := seen[lower]; dup {
				errs = append(errs, &FieldError{Key: join(path, k),
					Err: fmt.Errorf("given twice, as %q and %q (keys and header names ignore case)", first, k)})
				continue
			}
			seen[lower] = k
			errs = append(errs, foldedDuplicates(v[k], join(path, k))...)
		}
	case []any:
		for i, e := range v {
			errs = append(errs, foldedDuplicates(e, path+"["+strconv.Itoa(i)+"]")...)
		}
	}
	return errs
}

// unknownKeys reports every key of v, at any depth, that names no field
// of t by its mapstructure tag. Values of the wrong shape are left to the
// decoder.
func unknownKeys(v any, t reflect.Type, path string) []error {
	var errs []error
	switch v := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct {
			return nil // a map field (headers): any key goes
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			f, ok := fieldByTag(t, k)
			if !ok {
				errs = append(errs, &FieldError{Key: join(path, k), Err: ErrUnknownKey})
				continue
			}
			errs = append(errs, unknownKeys(v[k], f.Type, join(path, k))...)
		}
	case []any:
		if t.Kind() != reflect.Slice {
			return nil
		}
		for i, e := range v {
			errs = append(errs, unknownKeys(e, t.Elem(), path+"["+strconv.Itoa(i)+"]")...)
		}
	}
	return errs
}

// fieldByTag finds the field the decoder would fill from key: tags are
// matched ignoring case, and "-" fields are never filled.
func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag != "" && tag != "-" && strings.EqualFold(tag, key) {
			if f.Type.Kind() == reflect.Pointer {
				f.Type = f.Type.Elem()
			}
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// upstreamShape returns the number of upstream entries and, per entry, the
// header names as written, keyed by their lower-case form.
func upstreamShape(raw map[string]any) ([]map[string]string, int, error) {
	list, ok := lookupFold(raw, "upstreams")
	if !ok || list == nil {
		return nil, 0, nil
	}
	items, ok := list.([]any)
	if !ok {
		return nil, 0, &FieldError{Key: "upstreams", Err: fmt.Errorf("must be a list, got %s", yamlKind(list))}
	}
	names := make([]map[string]string, len(items))
	for i, item := range items {
		m, _ := item.(map[string]any) // not a mapping: the decoder reports it
		headers, _ := lookupFold(m, "headers")
		hm, _ := headers.(map[string]any)
		names[i] = make(map[string]string, len(hm))
		for k := range hm {
			names[i][strings.ToLower(k)] = k
		}
	}
	return names, len(items), nil
}

// restoreCase gives the decoded headers (keys lower-cased by viper) back
// the names written in the file.
func restoreCase(headers, names map[string]string) map[string]string {
	if len(headers) == 0 {
		return headers
	}
	out := make(map[string]string, len(headers))
	for k, v := range headers {
		if orig, ok := names[k]; ok {
			k = orig
		}
		out[k] = v
	}
	return out
}

func lookupFold(m map[string]any, key string) (any, bool) {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// EnvName is the environment variable that overrides key ("store.driver"
// → "WAKELINE_STORE_DRIVER").
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// envKeys lists every key the environment can override: each leaf of
// Config reachable through structs, found from the mapstructure tags so
// that a new field is bound without anyone remembering to. Lists of
// structs (upstreams) are left out.
func envKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for f := range t.Fields() {
			tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			key := join(prefix, tag)
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, key)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			default:
				keys = append(keys, key)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return keys
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook parses "30s"-style strings into time.Duration and refuses
// bare numbers, which would otherwise be read as nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from == durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		s := strings.TrimSpace(data.(string))
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("bad duration %q: want a number with a unit, like \"30s\" or \"5m\"", s)
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil, fmt.Errorf("bad duration %v: a unit is needed, like \"%vs\"", data, data)
	default:
		return data, nil
	}
}

// stringListHook splits a string on commas and white space where a list
// of strings is wanted: WAKELINE_AUTH_REGISTRATION_TOKENS="a,b c".
func stringListHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	return strings.FieldsFunc(data.(string), func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	}), nil
}

// fieldErrors turns the decoder's error tree into one *FieldError per
// failing key.
func fieldErrors(err error) []error {
	if de, ok := err.(*mapstructure.DecodeError); ok {
		inner := de.Unwrap()
		if _, nested := errors.AsType[*mapstructure.DecodeError](inner); nested {
			return fieldErrors(inner)
		}
		return []error{&FieldError{Key: de.Name(), Err: inner}}
	}
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		var out []error
		for _, sub := range e.Unwrap() {
			out = append(out, fieldErrors(sub)...)
		}
		return out
	case interface{ Unwrap() error }:
		if _, ok := errors.AsType[*mapstructure.DecodeError](err); ok {
			return fieldErrors(e.Unwrap())
		}
	}
	return []error{fmt.Errorf("config: %w", err)}
}
