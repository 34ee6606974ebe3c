package conf

import (
	"encoding"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stardust-go/stardust/internal/docs"
)

// referenceRow is a row of the configuration reference (docs/configuration.md):
// | `section.key` | `default` | meaning |. A top-level key (an array of
// tables) has no dot: its row names it as `[[key]]` in its meaning, which
// tells it from the rows of other tables (the server API's methods).
var referenceRow = regexp.MustCompile("(?m)^\\| `([a-z_]+(?:\\.[a-z_]+)*)` \\| `(.*?)` \\|(.*)$")

// TestConfigurationReference: the configuration reference (docs/configuration.md) has a
// row for every key of Config (by its toml tags) and no other, each with
// the default Default() gives (the cell read as TOML into the key's type).
// It once said the Redis engine was "not in this build", with the wrong
// default for engine.redis_url and without engine.redis_prefix and
// engine.timeout.
func TestConfigurationReference(t *testing.T) {
	readme, err := docs.Read("..")
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	want := leafKeys(reflect.ValueOf(&def).Elem(), "")
	rows := referenceRow.FindAllStringSubmatch(readme, -1)
	documented := map[string]bool{}
	var doc strings.Builder // every row's default, as one TOML document of dotted keys
	for _, r := range rows {
		key, value := r[1], r[2]
		if !strings.Contains(key, ".") && !strings.Contains(r[3], "`[["+key+"]]`") {
			continue // another table's row
		}
		if documented[key] {
			t.Errorf("README: %s has two rows", key)
		}
		documented[key] = true
		if _, ok := want[key]; !ok {
			t.Errorf("README documents %s, which the code does not have", key)
			continue
		}
		doc.WriteString(key + " = " + value + "\n")
	}
	var got Config
	if _, err := toml.Decode(doc.String(), &got); err != nil {
		t.Fatalf("the README's defaults do not read as TOML: %v\n%s", err, doc.String())
	}
	gotLeaves := leafKeys(reflect.ValueOf(&got).Elem(), "")
	for key, v := range want {
		if !documented[key] {
			t.Errorf("README's configuration reference lacks %s (default %v)", key, v.Interface())
			continue
		}
		if g := gotLeaves[key]; !sameValue(g, v) {
			t.Errorf("README says %s defaults to %v, the code %v", key, g.Interface(), v.Interface())
		}
	}
}

// leafKeys maps each dotted toml key of v (a Config) to its value: structs
// are sections, except those read from text (Duration).
func leafKeys(v reflect.Value, prefix string) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	for i := range v.NumField() {
		f := v.Type().Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		fv := v.Field(i)
		_, text := fv.Addr().Interface().(encoding.TextUnmarshaler)
		if fv.Kind() == reflect.Struct && !text {
			for k, lv := range leafKeys(fv, key+".") {
				out[k] = lv
			}
			continue
		}
		out[key] = fv
	}
	return out
}

// sameValue compares two values of a key, an empty list or table being
// the same whether it is nil or not.
func sameValue(a, b reflect.Value) bool {
	if (a.Kind() == reflect.Slice || a.Kind() == reflect.Map) && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}
