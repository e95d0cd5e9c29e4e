package recorder

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestEventJSONCarriesEveryField fills every Event field (payloads and
// Unredacted aside) and requires it back through the JSON shape: a new
// field that EventJSON forgets fails here.
func TestEventJSONCarriesEveryField(t *testing.T) {
	var e Event
	v := reflect.ValueOf(&e).Elem()
	for i := 0; i < v.NumField(); i++ {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch name {
		case "Params", "Result", "Unredacted":
			continue
		case "Hop":
			f.Set(reflect.ValueOf(HopUpstream))
			continue
		case "Outcome":
			f.Set(reflect.ValueOf(OutcomeToolError))
			continue
		case "Attrs":
			f.Set(reflect.ValueOf([]Attr{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}))
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString(name + "-value")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			f.SetInt(int64(7 + i))
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(uint64(7 + i))
		default:
			t.Fatalf("Event.%s: kind %s not filled by this test; extend it", name, f.Kind())
		}
	}
	j := NewEventJSON(&e)
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var back EventJSON
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Event(); !reflect.DeepEqual(got, e) {
		t.Errorf("Event → EventJSON → JSON → Event lost fields:\n got %+v\nwant %+v", got, e)
	}
}
