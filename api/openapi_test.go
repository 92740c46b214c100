package api_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/pb33f/libopenapi/orderedmap"
	"sigs.k8s.io/yaml"

	"github.com/wakeline/wakeline/api"
)

// model parses api.Spec and builds its 3.x model; any error resolving a
// reference or building a schema fails the test here.
func model(t *testing.T) (libopenapi.Document, *v3.Document) {
	t.Helper()
	doc, err := libopenapi.NewDocument(api.Spec)
	if err != nil {
		t.Fatalf("parsing openapi.yaml: %v", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("building the 3.1 model of openapi.yaml: %v", err)
	}
	return doc, &m.Model
}

func TestSpecIsOpenAPI31(t *testing.T) {
	doc, m := model(t)
	info := doc.GetSpecInfo()
	if info.SpecType != "openapi" || !strings.HasPrefix(info.Version, "3.1.") {
		t.Fatalf("spec is %s %s, want openapi 3.1.x", info.SpecType, info.Version)
	}
	if m.Info == nil || m.Info.Title == "" || m.Info.Version == "" {
		t.Fatal("info.title and info.version are required")
	}
}

// TestSpecValidAgainstMetaSchema checks the document against the OpenAPI
// 3.1 JSON Schema that the library ships.
func TestSpecValidAgainstMetaSchema(t *testing.T) {
	doc, _ := model(t)
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("%s: %s (line %d)", e.Message, e.Reason, e.SpecLine)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s: %s", se.FieldPath, se.Reason)
			}
		}
	}
}

// TestRefsResolve resolves every $ref as a JSON pointer into the document
// itself, independently of the library: all refs are local.
func TestRefsResolve(t *testing.T) {
	root := specTree(t)
	var refs []string
	collectRefs(root, &refs)
	if len(refs) == 0 {
		t.Fatal("no $ref found; the walk is broken")
	}
	for _, ref := range refs {
		if err := resolvePointer(root, ref); err != nil {
			t.Errorf("$ref %q: %v", ref, err)
		}
	}
}

func specTree(t *testing.T) any {
	t.Helper()
	js, err := yaml.YAMLToJSON(api.Spec)
	if err != nil {
		t.Fatalf("openapi.yaml is not YAML: %v", err)
	}
	var root any
	if err := json.Unmarshal(js, &root); err != nil {
		t.Fatal(err)
	}
	return root
}

func collectRefs(n any, refs *[]string) {
	switch n := n.(type) {
	case map[string]any:
		for k, v := range n {
			if s, ok := v.(string); ok && k == "$ref" {
				*refs = append(*refs, s)
				continue
			}
			collectRefs(v, refs)
		}
	case []any:
		for _, v := range n {
			collectRefs(v, refs)
		}
	}
}

func resolvePointer(root any, ref string) error {
	ptr, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return fmt.Errorf("not a local reference")
	}
	n := root
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch cur := n.(type) {
		case map[string]any:
			next, ok := cur[tok]
			if !ok {
				return fmt.Errorf("no %q", tok)
			}
			n = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(cur) {
				return fmt.Errorf("bad index %q", tok)
			}
			n = cur[i]
		default:
			return fmt.Errorf("%q: not a container", tok)
		}
	}
	return nil
}

type namedOp struct {
	where string // "GET /v1/vapid" or "webhook wake POST"
	path  string // the path template, "" for webhooks
	item  *v3.PathItem
	op    *v3.Operation
}

func operations(m *v3.Document) []namedOp {
	var ops []namedOp
	for path, item := range m.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			ops = append(ops, namedOp{strings.ToUpper(method) + " " + path, path, item, op})
		}
	}
	for name, item := range m.Webhooks.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			ops = append(ops, namedOp{"webhook " + name + " " + strings.ToUpper(method), "", item, op})
		}
	}
	return ops
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

func TestEveryOperationIsComplete(t *testing.T) {
	_, m := model(t)
	ids := map[string]string{}
	for _, o := range operations(m) {
		if o.op.OperationId == "" {
			t.Errorf("%s: no operationId", o.where)
		} else if prev, dup := ids[o.op.OperationId]; dup {
			t.Errorf("%s: operationId %q also used by %s", o.where, o.op.OperationId, prev)
		}
		ids[o.op.OperationId] = o.where
		if o.op.Responses == nil || o.op.Responses.Codes.Len() == 0 {
			t.Errorf("%s: no responses", o.where)
			continue
		}
		if o.path != "" && o.op.Security == nil {
			t.Errorf("%s: no security requirement (use [] for public operations)", o.where)
		}
		for _, name := range pathParam.FindAllStringSubmatch(o.path, -1) {
			if !declaresPathParam(o.item.Parameters, name[1]) && !declaresPathParam(o.op.Parameters, name[1]) {
				t.Errorf("%s: path parameter %q is not declared", o.where, name[1])
			}
		}
		if o.path != "" {
			checkErrorBodies(t, o)
		}
	}
}

func declaresPathParam(ps []*v3.Parameter, name string) bool {
	return slices.ContainsFunc(ps, func(p *v3.Parameter) bool {
		return p.In == "path" && p.Name == name && p.Required != nil && *p.Required
	})
}

// checkErrorBodies: every 4xx of the REST API answers the Error body.
func checkErrorBodies(t *testing.T, o namedOp) {
	t.Helper()
	for code, resp := range o.op.Responses.Codes.FromOldest() {
		if !strings.HasPrefix(code, "4") {
			continue
		}
		mt := jsonMedia(resp.Content)
		if mt == nil || mt.Schema == nil {
			t.Errorf("%s %s: no application/json error body", o.where, code)
			continue
		}
		if s := mt.Schema.Schema(); s == nil || s.Required == nil || !slices.Contains(s.Required, "error") {
			t.Errorf("%s %s: the body is not the Error schema", o.where, code)
		}
	}
}

// TestExamplesMatchSchemas validates every JSON example in the document
// against the schema beside it, so that the examples cannot drift.
func TestExamplesMatchSchemas(t *testing.T) {
	_, m := model(t)
	sv := schema_validation.NewSchemaValidator()
	n := 0
	check := func(where string, mt *v3.MediaType) {
		if mt == nil || mt.Schema == nil {
			return
		}
		for name, ex := range mt.Examples.FromOldest() {
			var v any
			if err := ex.Value.Decode(&v); err != nil {
				t.Errorf("%s example %s: %v", where, name, err)
				continue
			}
			n++
			if ok, errs := sv.ValidateSchemaObject(mt.Schema.Schema(), jsonRoundTrip(t, v)); !ok {
				t.Errorf("%s example %s does not match its schema: %s", where, name, describe(errs))
			}
		}
	}
	for _, o := range operations(m) {
		if o.op.RequestBody != nil {
			check(o.where+" request", jsonMedia(o.op.RequestBody.Content))
		}
		for code, resp := range o.op.Responses.Codes.FromOldest() {
			check(o.where+" "+code, jsonMedia(resp.Content))
		}
	}
	for name, resp := range m.Components.Responses.FromOldest() {
		check("response "+name, jsonMedia(resp.Content))
	}
	for name, sp := range m.Components.Schemas.FromOldest() {
		s := sp.Schema()
		for i, ex := range s.Examples {
			var v any
			if err := ex.Decode(&v); err != nil {
				t.Fatal(err)
			}
			n++
			if ok, errs := sv.ValidateSchemaObject(s, jsonRoundTrip(t, v)); !ok {
				t.Errorf("schema %s example %d: %s", name, i, describe(errs))
			}
		}
	}
	if n < 5 {
		t.Fatalf("only %d examples checked; the walk is broken", n)
	}
}

// jsonMedia is the application/json entry of a content map, nil if none.
func jsonMedia(content *orderedmap.Map[string, *v3.MediaType]) *v3.MediaType {
	if content == nil {
		return nil
	}
	return content.GetOrZero("application/json")
}

// jsonRoundTrip gives v the types encoding/json would (float64 numbers,
// map[string]any), which is what the validator expects of a decoded body.
func jsonRoundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func describe(errs []*liberrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString(e.Message)
		if e.Reason != "" {
			b.WriteString(": " + e.Reason)
		}
		for _, se := range e.SchemaValidationErrors {
			b.WriteString(" [" + se.FieldPath + ": " + se.Reason + "]")
		}
		b.WriteString("; ")
	}
	return b.String()
}

func schema(t *testing.T, m *v3.Document, name string) *base.Schema {
	t.Helper()
	sp := m.Components.Schemas.GetOrZero(name)
	if sp == nil {
		t.Fatalf("no schema %s; have %v", name, slices.Collect(maps.Keys(maps.Collect(m.Components.Schemas.FromOldest()))))
	}
	return sp.Schema()
}
