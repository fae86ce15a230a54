package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Encode marshals a result as the provisioner publishes it: '&' in invite
// links left as it is (json.Marshal would write \u0026, and a stored result
// would then no longer be republished byte for byte), no trailing newline.
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("messages: encoding %T: %w", v, err)
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
