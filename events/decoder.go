package events

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Decoder reads stored events and their payloads with the semantics of ParseEvent and
// Event.Payload (encoding/json), several times faster. The replay of a log spends most of its
// time here. Three ways, tried in turn:
//
//   - the envelope exactly as Event.Marshal writes it (its fields in order, ASCII strings
//     without escapes) read by hand, and the payload by encoding/json/v2 in its strict mode
//     (names matched exactly, no unknown or duplicate names, valid UTF-8), where strict and
//     encoding/json cannot differ;
//   - anything else in one encoding/json/v2 pass with v1's semantics (names without regard to
//     case, the last of duplicate names, invalid UTF-8 replaced), the payload decoded where it
//     stands when the type comes before it;
//   - every error (for its message) by ParseEvent and Payload.
//
// e.Data is a slice of the stored bytes, not a copy. A Decoder is used by one goroutine at a
// time.
type Decoder struct {
	view bool // strings of the hand-read layout view raw (NewViewDecoder)
	opts jsonv2.Options
	raw  []byte
	e    *Event
	p    any
	pFor string
}

var (
	// v1Compat makes encoding/json/v2 read what encoding/json reads.
	v1Compat = jsonv2.JoinOptions(jsonv2.MatchCaseInsensitiveNames(true), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)) // read-only
	// strict fails wherever v1Compat and encoding/json could read differently.
	strict = jsonv2.RejectUnknownMembers(true) // read-only
)

// NewDecoder returns a decoder.
func NewDecoder() *Decoder {
	d := &Decoder{}
	d.opts = jsonv2.JoinOptions(v1Compat, jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, v *json.RawMessage) error {
		if v != &d.e.Data {
			return jsonv2.SkipFunc
		}
		if d.p != nil {
			d.p = nil // a second "data": the last one counts, decoded again at the end
		} else if d.e.Type != "" {
			if p := NewPayload(d.e.Type); p != nil {
				start := dec.InputOffset()
				if err := jsonv2.UnmarshalDecode(dec, p, v1Compat); err != nil {
					return err
				}
				d.p, d.pFor = p, d.e.Type
				*v = trimLead(d.raw[start:dec.InputOffset()])
				return nil
			}
		}
		val, err := dec.ReadValue()
		if err != nil {
			return err
		}
		end := dec.InputOffset()
		*v = d.raw[end-int64(len(val)) : end]
		return nil
	})))
	return d
}

// trimLead drops what precedes a value in the input: white space and the name separator.
func trimLead(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r' || b[0] == ':' || b[0] == ',') {
		b = b[1:]
	}
	return b
}

// NewViewDecoder returns a decoder whose events and payloads, when laid out as Marshal writes
// them (as every stored event is), have strings that view raw instead of copies of it: a replay
// then allocates a third as often. raw must never change afterwards, and whoever keeps such a
// string beyond the event must keep a strings.Clone of it, or the string keeps all of raw
// alive.
func NewViewDecoder() *Decoder {
	d := NewDecoder()
	d.view = true
	return d
}

// Decode reads raw into e (which it resets) and returns its payload.
func (d *Decoder) Decode(raw []byte, e *Event) (any, error) {
	*e = Event{}
	if p := decodeMarshalled(raw, e, d.view); p != nil {
		return p, nil
	}
	*e = Event{}
	d.raw, d.e, d.p, d.pFor = raw, e, nil, ""
	defer func() { d.raw, d.e, d.p = nil, nil, nil }()
	if jsonv2.Unmarshal(raw, e, d.opts) == nil && e.SpecVersion == "1.0" && e.Type != "" && e.Subject != "" {
		p := d.p
		if p == nil || d.pFor != e.Type { // the data came first, or a later "type" replaced it
			if p = NewPayload(e.Type); p == nil || jsonv2.Unmarshal(e.Data, p, v1Compat) != nil {
				p = nil
			}
		}
		if p != nil {
			return p, nil
		}
	}
	ev, err := ParseEvent(raw)
	if err != nil {
		return nil, err
	}
	*e = *ev
	return e.Payload()
}

// decodeMarshalled reads raw when it is laid out as Event.Marshal writes it and returns the
// payload; anything else answers nil (e then holds a partial read). view: strings view raw.
func decodeMarshalled(raw []byte, e *Event, view bool) any {
	r := envReader{b: raw, view: view}
	if !r.lit(`{"specversion":`) || !r.constant(&e.SpecVersion) || e.SpecVersion != "1.0" ||
		!r.lit(`,"id":`) || !r.str(&e.ID) ||
		!r.lit(`,"source":`) || !r.constant(&e.Source) ||
		!r.lit(`,"type":`) || !r.constant(&e.Type) ||
		!r.lit(`,"subject":`) || !r.str(&e.Subject) || e.Subject == "" ||
		!r.lit(`,"time":`) || !r.time(&e.Time) ||
		!r.lit(`,"datacontenttype":`) || !r.constant(&e.DataContentType) ||
		!r.lit(`,"occurredat":`) || !r.time(&e.OccurredAt) ||
		!r.lit(`,"actor":`) || !r.str(&e.Actor) {
		return nil
	}
	if r.lit(`,"actorrole":`) && !r.constant(&e.ActorRole) {
		return nil
	}
	if !r.lit(`,"commandid":`) || !r.str(&e.CommandID) || !r.lit(`,"prevhash":`) || !r.str(&e.PrevHash) {
		return nil
	}
	if r.lit(`,"sig":`) && !r.str(&e.Sig) {
		return nil
	}
	if !r.lit(`,"data":{`) || raw[len(raw)-1] != '}' {
		return nil
	}
	data := raw[r.i-1 : len(raw)-1]
	pr := envReader{b: data, view: view}
	p := pr.payload(e.Type)
	if p == nil || pr.i != len(data) {
		// not as Marshal writes it (escapes, white space, a name twice, null, ...): strict
		// mode decides, or else the slower ways
		if p = NewPayload(e.Type); p == nil || jsonv2.Unmarshal(data, p, strict) != nil {
			return nil
		}
	}
	e.Data = data
	return p
}

// payload reads the data of an event of type typ as Marshal writes it: every name once and
// known to the payload, no null, no empty array, strings of valid UTF-8 without escapes.
// Anything else answers nil.
func (r *envReader) payload(typ string) any {
	switch typ {
	case TypeReported:
		p := &Reported{}
		return okOr(p, r.object(func(k []byte) bool {
			switch string(k) {
			case "sector":
				return r.text(&p.Sector)
			case "region":
				return r.text(&p.Region)
			case "site":
				return r.site(&p.Site)
			case "location":
				p.Location = &Location{}
				return r.location(p.Location)
			case "grade":
				return r.text(&p.Grade)
			case "criterion":
				return r.text(&p.Criterion)
			case "description":
				return r.text(&p.Description)
			case "source":
				return r.text(&p.Source)
			case "deadline":
				return r.text(&p.Deadline)
			case "evidence":
				return r.evidence(&p.Evidence)
			case "supersedes":
				return r.text(&p.Supersedes)
			}
			return false
		}))
	case TypeAmended:
		p := &Amended{}
		return okOr(p, r.object(func(k []byte) bool {
			switch string(k) {
			case "description":
				p.Description = new(string)
				return r.text(p.Description)
			case "site":
				p.Site = &Site{}
				return r.site(p.Site)
			case "location":
				p.Location = &Location{}
				return r.location(p.Location)
			}
			return false
		}))
	case TypeGraded:
		p := &Graded{}
		return okOr(p, r.texts([]named{{"grade", &p.Grade}, {"criterion", &p.Criterion}, {"reason", &p.Reason}}))
	case TypeListed:
		p := &Listed{}
		return okOr(p, r.texts([]named{{"level", &p.Level}, {"authority", &p.Authority}, {"document", &p.Document}, {"deadline", &p.Deadline}}))
	case TypePlanned:
		p := &Planned{}
		return okOr(p, r.texts([]named{{"responsible", &p.Responsible}, {"measures", &p.Measures}, {"funds", &p.Funds}, {"deadline", &p.Deadline}, {"contingency", &p.Contingency}}))
	case TypeProgressed:
		p := &Progressed{}
		return okOr(p, r.object(func(k []byte) bool {
			switch string(k) {
			case "note":
				return r.text(&p.Note)
			case "percent":
				return r.int(&p.Percent)
			case "evidence":
				return r.evidence(&p.Evidence)
			}
			return false
		}))
	case TypeExtended:
		p := &Extended{}
		return okOr(p, r.texts([]named{{"deadline", &p.Deadline}, {"reason", &p.Reason}}))
	case TypeCompleted:
		p := &Completed{}
		return okOr(p, r.textsAndEvidence([]named{{"note", &p.Note}}, &p.Evidence))
	case TypeVerifyFailed:
		p := &VerifyFailed{}
		return okOr(p, r.textsAndEvidence([]named{{"reason", &p.Reason}}, &p.Evidence))
	case TypeCleared:
		p := &Cleared{}
		return okOr(p, r.textsAndEvidence([]named{{"method", &p.Method}, {"note", &p.Note}}, &p.Evidence))
	case TypeReopened:
		p := &Reopened{}
		return okOr(p, r.texts([]named{{"reason", &p.Reason}, {"deadline", &p.Deadline}}))
	case TypeWithdrawn:
		p := &Withdrawn{}
		return okOr(p, r.texts([]named{{"reason", &p.Reason}}))
	}
	return nil
}

func okOr(p any, ok bool) any {
	if !ok {
		return nil
	}
	return p
}

// named is a string field of a payload and its JSON name.
type named struct {
	name string
	v    *string
}

// texts reads an object of the string fields fs.
func (r *envReader) texts(fs []named) bool { return r.textsAndEvidence(fs, nil) }

// textsAndEvidence reads an object of the string fields fs and, when ev is not nil, evidence.
func (r *envReader) textsAndEvidence(fs []named, ev *[]Evidence) bool {
	return r.object(func(k []byte) bool {
		for _, f := range fs {
			if string(k) == f.name {
				return r.text(f.v)
			}
		}
		if ev != nil && string(k) == "evidence" {
			return r.evidence(ev)
		}
		return false
	})
}

func (r *envReader) site(s *Site) bool {
	return r.texts([]named{{"name", &s.Name}, {"credit_code", &s.CreditCode}, {"id", &s.ID}})
}

func (r *envReader) location(l *Location) bool {
	return r.object(func(k []byte) bool {
		switch string(k) {
		case "lat":
			return r.float(&l.Lat)
		case "lon":
			return r.float(&l.Lon)
		case "address":
			return r.text(&l.Address)
		}
		return false
	})
}

// evidence reads a non-empty array of evidence objects.
func (r *envReader) evidence(ev *[]Evidence) bool {
	if !r.lit("[") || r.lit("]") {
		return false
	}
	for {
		var x Evidence
		if !r.texts([]named{{"sha256", &x.SHA256}, {"name", &x.Name}}) {
			return false
		}
		*ev = append(*ev, x)
		if r.lit("]") {
			return true
		}
		if !r.lit(",") {
			return false
		}
	}
}

// object reads an object, calling field for each name (which reads the value); a name twice
// answers false, as do more than 16 names.
func (r *envReader) object(field func(name []byte) bool) bool {
	if !r.lit("{") {
		return false
	}
	if r.lit("}") {
		return true
	}
	var seen [16][]byte
	for n := 0; ; n++ {
		k, ok := r.quoted()
		if !ok || n == len(seen) || !r.lit(":") {
			return false
		}
		for _, s := range seen[:n] {
			if string(s) == string(k) {
				return false
			}
		}
		seen[n] = k
		if !field(k) {
			return false
		}
		if r.lit("}") {
			return true
		}
		if !r.lit(",") {
			return false
		}
	}
}

// text reads a string of valid UTF-8 without escapes or control characters.
func (r *envReader) text(s *string) bool {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return false
	}
	ascii := true
	j := r.i + 1
	for ; j+8 <= len(r.b); j += 8 { // 8 bytes at a time up to the first that needs a look
		x := binary.LittleEndian.Uint64(r.b[j:])
		if special8(x) {
			break
		}
		if x&highs != 0 {
			ascii = false
		}
	}
	for ; j < len(r.b); j++ {
		switch c := r.b[j]; {
		case c == '"':
			v := r.b[r.i+1 : j]
			if !ascii && !utf8.Valid(v) {
				return false
			}
			*s = r.string(v)
			r.i = j + 1
			return true
		case c < 0x20 || c == '\\':
			return false
		case c >= 0x80:
			ascii = false
		}
	}
	return false
}

// number consumes a JSON number and returns it; integer says whether it has neither a
// fraction nor an exponent.
func (r *envReader) number() (num string, integer bool, ok bool) {
	b, i := r.b, r.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return "", false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer, i = false, i+1
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return "", false, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer, i = false, i+1
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return "", false, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	num, r.i = view(b[r.i:i]), i // parsed at once, never kept (strconv's errors copy it)
	return num, integer, true
}

func (r *envReader) float(f *float64) bool {
	num, _, ok := r.number()
	if !ok {
		return false
	}
	v, err := strconv.ParseFloat(num, 64)
	*f = v
	return err == nil
}

func (r *envReader) int(n *int) bool {
	num, integer, ok := r.number()
	if !ok || !integer {
		return false
	}
	v, err := strconv.ParseInt(num, 10, 0)
	*n = int(v)
	return err == nil
}

// envReader reads an envelope as Marshal writes it.
type envReader struct {
	b    []byte
	i    int
	view bool // strings view b instead of copying it
}

// string is b as a string: a view of it, or a copy.
func (r *envReader) string(b []byte) string {
	if r.view {
		return view(b)
	}
	return string(b)
}

// view is a string that shares b's bytes, which must never change while it is in use.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// lit consumes s if the input continues with it.
func (r *envReader) lit(s string) bool {
	if len(r.b)-r.i < len(s) || string(r.b[r.i:r.i+len(s)]) != s {
		return false
	}
	r.i += len(s)
	return true
}

const ones, highs = 0x0101010101010101, 0x8080808080808080

// special8 reports whether one of the 8 bytes of x (little-endian) is a quote, a backslash or
// a control character. It may also report one after such a byte, never none before: the
// callers look at the bytes one by one from there.
func special8(x uint64) bool {
	q, s := x^(ones*'"'), x^(ones*'\\')
	return ((q-ones)&^q|(s-ones)&^s|(x-ones*0x20)&^x)&highs != 0
}

// quoted consumes a string of printable ASCII without escapes and returns what is between
// its quotes.
func (r *envReader) quoted() ([]byte, bool) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return nil, false
	}
	j := r.i + 1
	for ; j+8 <= len(r.b); j += 8 {
		if x := binary.LittleEndian.Uint64(r.b[j:]); special8(x) || x&highs != 0 {
			break
		}
	}
	for ; j < len(r.b); j++ {
		switch c := r.b[j]; {
		case c == '"':
			s := r.b[r.i+1 : j]
			r.i = j + 1
			return s, true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// str reads a string into *s.
func (r *envReader) str(s *string) bool {
	b, ok := r.quoted()
	if ok {
		*s = r.string(b)
	}
	return ok
}

// constant is str for a field of few values, shared rather than copied when known.
func (r *envReader) constant(s *string) bool {
	b, ok := r.quoted()
	if ok {
		*s = r.shared(b)
	}
	return ok
}

// time reads a time as time.Time's UnmarshalJSON does.
func (r *envReader) time(t *time.Time) bool {
	start := r.i
	if _, ok := r.quoted(); !ok {
		return false
	}
	return t.UnmarshalJSON(r.b[start:r.i]) == nil
}

// sharedStrings are the values repeated by every event, returned without a copy.
var sharedStrings = []string{"1.0", "application/json", DefaultSource,
	TypeReported, TypeAmended, TypeGraded, TypeListed, TypePlanned, TypeProgressed, TypeExtended,
	TypeCompleted, TypeVerifyFailed, TypeCleared, TypeReopened, TypeWithdrawn,
	RoleInspector, RoleRectifier, RoleVerifier, RoleDesk, RoleAuditor, RoleAdmin} // read-only

func (r *envReader) shared(b []byte) string {
	for _, s := range sharedStrings {
		if string(b) == s {
			return s
		}
	}
	return r.string(b)
}
