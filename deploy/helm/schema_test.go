package helm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// kubeconform validates against JSON schemas that it normally downloads
// (yannh/kubernetes-json-schema); nothing can be downloaded here. So the
// schemas are generated from the Kubernetes API's own Go types (k8s.io/api,
// the types the API server decodes into): every struct is a closed object
// (additionalProperties: false, as kubeconform's "-strict" schemas are),
// every field has its JSON type, and the types with a custom JSON form
// (Quantity, IntOrString, Time, RawExtension) get that form. What these
// schemas do not know, unlike the OpenAPI ones: which fields are required
// and enum values — the typed decode in chart_test.go and the checks there
// cover what the chart relies on.

// schemaKinds are the kinds the chart renders, by kubeconform's file name
// ({{ .ResourceKind }}{{ .KindSuffix }}.json).
var schemaKinds = map[string]any{
	"deployment-apps-v1":                     appsv1.Deployment{},
	"service-v1":                             corev1.Service{},
	"configmap-v1":                           corev1.ConfigMap{},
	"secret-v1":                              corev1.Secret{},
	"serviceaccount-v1":                      corev1.ServiceAccount{},
	"horizontalpodautoscaler-autoscaling-v2": autoscalingv2.HorizontalPodAutoscaler{},
	"poddisruptionbudget-policy-v1":          policyv1.PodDisruptionBudget{},
}

// writeSchemas writes one schema file per kind into dir.
func writeSchemas(dir string) error {
	for name, v := range schemaKinds {
		g := &schemaGen{defs: map[string]any{}}
		root := g.structSchema(reflect.TypeOf(v))
		root["$schema"] = "http://json-schema.org/draft-07/schema#"
		root["definitions"] = g.defs
		b, err := json.MarshalIndent(root, "", " ")
		if err != nil {
			return fmt.Errorf("encoding schema %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
			return fmt.Errorf("writing schema %s: %w", name, err)
		}
	}
	return nil
}

type schemaGen struct {
	defs map[string]any
}

var (
	quantityType    = reflect.TypeOf(resource.Quantity{})
	intOrStringType = reflect.TypeOf(intstr.IntOrString{})
	timeType        = reflect.TypeOf(metav1.Time{})
	microTimeType   = reflect.TypeOf(metav1.MicroTime{})
	durationType    = reflect.TypeOf(metav1.Duration{})
	rawExtType      = reflect.TypeOf(runtime.RawExtension{})
	fieldsV1Type    = reflect.TypeOf(metav1.FieldsV1{})
)

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	switch t {
	case quantityType:
		return map[string]any{"anyOf": []any{
			map[string]any{"type": "string", "pattern": `^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$`},
			map[string]any{"type": "number"},
		}}
	case intOrStringType:
		return map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	case timeType, microTimeType:
		return map[string]any{"type": []any{"string", "null"}, "format": "date-time"}
	case durationType:
		return map[string]any{"type": "string"}
	case rawExtType, fieldsV1Type:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return nullable(g.schema(t.Elem()))
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": []any{"string", "null"}} // []byte: base64
		}
		return map[string]any{"type": []any{"array", "null"}, "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": []any{"object", "null"}, "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		name := strings.NewReplacer("/", ".", "-", "_").Replace(t.PkgPath()) + "." + t.Name()
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = nil // placeholder: recursive types refer to it
			g.defs[name] = g.structSchema(t)
		}
		return map[string]any{"$ref": "#/definitions/" + name}
	case reflect.Interface:
		return map[string]any{}
	}
	panic("schema: unsupported type " + t.String())
}

func nullable(s map[string]any) map[string]any {
	if _, isRef := s["$ref"]; isRef {
		return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
	}
	return s
}

// structSchema is a closed object with a property per JSON field; inline
// (embedded) structs contribute their fields.
func (g *schemaGen) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	g.fields(t, props)
	return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
}

func (g *schemaGen) fields(t reflect.Type, props map[string]any) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			g.fields(ft, props)
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
	}
}
