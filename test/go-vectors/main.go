// go-vectors: E4 interoperability vectors from the reference Go implementation (e4go), for the
// TypeScript library in lib/e4. Two modes:
//
//	go-vectors emit          print Go-produced vectors as one JSON object on stdout
//	go-vectors check < in    read TS-produced values (JSON) and verify them with e4go, printing
//	                         {"ok":..,"checked":N,"failures":[...]}; exit 1 when any check fails
//	go-vectors argon2-time   time e4go's DeriveSymKey (64 MiB, t=1, p=4) for bench/e4.ts
//	go-vectors unprotect-throughput [N]   time e4go's UnprotectSymKey on N 1 KiB messages
//
// C2's own code (github.com/teserakt-io/c2) is not imported: the few lines it adds on top of e4go
// (DB sealing with an empty associated-data item, the pubkey-mode command key) are restated here.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	miscreant "github.com/miscreant/miscreant.go"
	e4 "github.com/teserakt-io/e4go"
	e4crypto "github.com/teserakt-io/e4go/crypto"
	"github.com/teserakt-io/e4go/keys"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/ed25519"
)

type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }
func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

type idVec struct {
	Name         string   `json:"name"`
	ID           hexBytes `json:"id"`
	CommandTopic string   `json:"commandTopic,omitempty"`
}
type topicVec struct {
	Topic string   `json:"topic"`
	Hash  hexBytes `json:"hash"`
}
type argonVec struct {
	Password string   `json:"password"`
	T        uint32   `json:"t"`
	MKiB     uint32   `json:"mKiB"`
	P        uint8    `json:"p"`
	DkLen    uint32   `json:"dkLen"`
	Key      hexBytes `json:"key"`
}
type sivVec struct {
	Key       hexBytes   `json:"key"`
	AD        []hexBytes `json:"ad"`
	Plaintext hexBytes   `json:"plaintext"`
	Sealed    hexBytes   `json:"sealed"`
}
type cmdVec struct {
	Type  string            `json:"type"`
	Args  map[string]string `json:"args"`
	Bytes hexBytes          `json:"bytes"`
}
type protectedVec struct {
	Payload   hexBytes `json:"payload"`
	Protected hexBytes `json:"protected"`
}
type dbValues struct {
	Passphrase string   `json:"passphrase"`
	DbKey      hexBytes `json:"dbKey"`
	Values     []struct {
		Plain  hexBytes `json:"plain"`
		Sealed hexBytes `json:"sealed"`
	} `json:"values"`
}
type passwordKeys struct {
	Password       string   `json:"password"`
	SymKey         hexBytes `json:"symKey"`
	Ed25519Private hexBytes `json:"ed25519Private"`
}
type symkeySession struct {
	DeviceID  hexBytes       `json:"deviceId"`
	DeviceKey hexBytes       `json:"deviceKey"`
	Commands  []protectedVec `json:"commands"`
	Topic     string         `json:"topic"`
	TopicKey  hexBytes       `json:"topicKey"`
	Messages  []protectedVec `json:"messages"`
}
type pubkeySession struct {
	C2Private            hexBytes       `json:"c2Private,omitempty"`
	C2Public             hexBytes       `json:"c2Public"`
	DeviceID             hexBytes       `json:"deviceId"`
	DeviceEd25519Private hexBytes       `json:"deviceEd25519Private"`
	DeviceEd25519Public  hexBytes       `json:"deviceEd25519Public,omitempty"`
	DeviceCurvePrivate   hexBytes       `json:"deviceCurvePrivate,omitempty"`
	DeviceCurvePublic    hexBytes       `json:"deviceCurvePublic,omitempty"`
	CommandKey           hexBytes       `json:"commandKey,omitempty"`
	Commands             []protectedVec `json:"commands"`
	Topic                string         `json:"topic"`
	TopicKey             hexBytes       `json:"topicKey"`
	SenderID             hexBytes       `json:"senderId"`
	SenderEd25519Public  hexBytes       `json:"senderEd25519Public"`
	Messages             []protectedVec `json:"messages"`
}

type vectors struct {
	E4goVersion  string         `json:"e4goVersion"`
	Now          int64          `json:"now"`
	IDs          []idVec        `json:"ids"`
	Topics       []topicVec     `json:"topics"`
	Argon2i      []argonVec     `json:"argon2i"`
	PasswordKeys *passwordKeys  `json:"passwordKeys,omitempty"`
	SIV          []sivVec       `json:"siv"`
	Commands     []cmdVec       `json:"commands"`
	DbValues     *dbValues      `json:"dbValues"`
	Symkey       *symkeySession `json:"symkey"`
	Pubkey       *pubkeySession `json:"pubkey"`
}

// det returns n deterministic bytes for a label, so emitted vectors are stable between runs.
func det(label string, n int) []byte {
	out := make([]byte, 0, n)
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", label, i)))
		out = append(out, h[:]...)
	}
	return out[:n]
}

// edKey is a deterministic Ed25519 key pair for a label.
func edKey(label string) (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(det(label, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-vectors:", err)
		os.Exit(2)
	}
}

func must1[T any](v T, err error) T {
	must(err)
	return v
}

// c2SealDbValue is what C2 stores in every `key` column: e4crypto.Encrypt(dbKey, nil, value).
func c2SealDbValue(dbKey, value []byte) []byte { return must1(e4crypto.Encrypt(dbKey, nil, value)) }

// c2CommandKey is C2's pubkey-mode command key (c2 internal/crypto e4PubKey.ProtectCommand).
func c2CommandKey(c2Priv, deviceEdPub []byte) []byte {
	shared := must1(curve25519.X25519(c2Priv, e4crypto.PublicEd25519KeyToCurve25519(deviceEdPub)))
	return e4crypto.Sha3Sum256(shared)
}

func sivSeal(key []byte, ad [][]byte, pt []byte) []byte {
	c := must1(miscreant.NewAESCMACSIV(key))
	return must1(c.Seal(nil, pt, ad...))
}

func commandVectors() []cmdVec {
	key := det("topic-key", 32)
	edPub, _ := edKey("peer-ed25519")
	_, idEd := edKey("new-id-ed25519")
	c2Pub := must1(curve25519.X25519(det("c2-next", 32), curve25519.Basepoint))
	return []cmdVec{
		{"RemoveTopic", map[string]string{"topic": "fleet/a/telemetry"}, must1(e4.CmdRemoveTopic("fleet/a/telemetry"))},
		{"ResetTopics", map[string]string{}, must1(e4.CmdResetTopics())},
		{"SetIdKey", map[string]string{"key": hex.EncodeToString(det("new-id-key", 32))}, must1(e4.CmdSetIDKey(det("new-id-key", 32)))},
		{"SetIdKey", map[string]string{"key": hex.EncodeToString(idEd)}, must1(e4.CmdSetIDKey(idEd))},
		{"SetTopicKey", map[string]string{"key": hex.EncodeToString(key), "topic": "fleet/a/telemetry"}, must1(e4.CmdSetTopicKey(key, "fleet/a/telemetry"))},
		{"RemovePubKey", map[string]string{"name": "device-0042"}, must1(e4.CmdRemovePubKey("device-0042"))},
		{"ResetPubKeys", map[string]string{}, must1(e4.CmdResetPubKeys())},
		{"SetPubKey", map[string]string{"publicKey": hex.EncodeToString(edPub), "name": "device-0042"}, must1(e4.CmdSetPubKey(edPub, "device-0042"))},
		{"SetC2Key", map[string]string{"publicKey": hex.EncodeToString(c2Pub)}, must1(e4.CmdSetC2Key(c2Pub))},
	}
}

func emit() {
	v := vectors{E4goVersion: "v1.1.0", Now: time.Now().Unix()}
	for _, n := range []string{"device-0001", "a", "Ünïcødé-名前", "c2-admin with spaces"} {
		id := e4crypto.HashIDAlias(n)
		v.IDs = append(v.IDs, idVec{n, id, e4.TopicForID(id)})
	}
	for _, t := range []string{"fleet/a/telemetry", "e4/0011", "x", "/leading/slash", "emoji/🚀"} {
		v.Topics = append(v.Topics, topicVec{t, e4crypto.HashTopic(t)})
	}
	for _, a := range []argonVec{
		{Password: "password", T: 1, MKiB: 8, P: 1, DkLen: 32},
		{Password: "p", T: 3, MKiB: 101, P: 3, DkLen: 100},
		{Password: "another password", T: 2, MKiB: 1024, P: 4, DkLen: 16},
		{Password: "0123456789abcdef", T: 1, MKiB: 4096, P: 4, DkLen: 32},
	} {
		a.Key = argon2.Key([]byte(a.Password), nil, a.T, a.MKiB, a.P, a.DkLen)
		v.Argon2i = append(v.Argon2i, a)
	}
	pw := "device password 0001"
	v.PasswordKeys = &passwordKeys{pw, must1(e4crypto.DeriveSymKey(pw)), must1(e4crypto.Ed25519PrivateKeyFromPassword(pw))}

	for i, n := range []int{0, 1, 15, 16, 17, 32, 100, 1024} {
		key := det(fmt.Sprintf("siv-key-%d", i), 64)
		pt := det(fmt.Sprintf("siv-pt-%d", i), n)
		ads := [][]byte{det("ad0", i), {}}
		s := sivVec{Key: key, Plaintext: pt}
		for _, a := range ads {
			s.AD = append(s.AD, a)
		}
		s.Sealed = sivSeal(key, ads, pt)
		v.SIV = append(v.SIV, s)
	}
	v.Commands = commandVectors()

	// C2 key store: DB key from the passphrase, sealed symmetric keys and Ed25519 public keys.
	pass := "escrowed db passphrase 2020"
	dbKey := must1(e4crypto.DeriveSymKey(pass))
	v.DbValues = &dbValues{Passphrase: pass, DbKey: dbKey}
	pub, _ := edKey("db-ed")
	for _, plain := range [][]byte{det("db-topic-key", 32), det("db-client-key", 32), pub} {
		v.DbValues.Values = append(v.DbValues.Values, struct {
			Plain  hexBytes `json:"plain"`
			Sealed hexBytes `json:"sealed"`
		}{plain, c2SealDbValue(dbKey, plain)})
	}

	// Symkey mode: C2 sends commands sealed with the device key; messages under the topic key.
	devKey := det("device-key", 32)
	topic := "fleet/a/telemetry"
	topicKey := det("topic-key", 32)
	sym := &symkeySession{DeviceID: e4crypto.HashIDAlias("device-0001"), DeviceKey: devKey, Topic: topic, TopicKey: topicKey}
	for _, c := range v.Commands {
		if c.Type == "SetIdKey" && len(c.Bytes) != 33 || c.Type == "SetPubKey" || c.Type == "RemovePubKey" || c.Type == "ResetPubKeys" || c.Type == "SetC2Key" {
			continue
		}
		sym.Commands = append(sym.Commands, protectedVec{c.Bytes, must1(e4crypto.ProtectSymKey(c.Bytes, devKey))})
	}
	for _, n := range []int{1, 16, 17, 1024} {
		p := det(fmt.Sprintf("msg-%d", n), n)
		sym.Messages = append(sym.Messages, protectedVec{p, must1(e4crypto.ProtectSymKey(p, topicKey))})
	}
	v.Symkey = sym

	// Pubkey mode.
	c2Priv := det("c2-private", 32)
	c2Pub := must1(curve25519.X25519(c2Priv, curve25519.Basepoint))
	devPub, devPriv := edKey("device-ed25519")
	senderPub, senderPriv := edKey("sender-ed25519")
	senderID := e4crypto.HashIDAlias("device-0002")
	pk := &pubkeySession{
		C2Private: c2Priv, C2Public: c2Pub,
		DeviceID: e4crypto.HashIDAlias("device-0001"), DeviceEd25519Private: hexBytes(devPriv), DeviceEd25519Public: hexBytes(devPub),
		DeviceCurvePrivate: e4crypto.PrivateEd25519KeyToCurve25519(devPriv),
		DeviceCurvePublic:  e4crypto.PublicEd25519KeyToCurve25519(devPub),
		CommandKey:         c2CommandKey(c2Priv, devPub),
		Topic:              topic, TopicKey: topicKey, SenderID: senderID, SenderEd25519Public: hexBytes(senderPub),
	}
	for _, c := range v.Commands {
		pk.Commands = append(pk.Commands, protectedVec{c.Bytes, must1(e4crypto.ProtectSymKey(c.Bytes, pk.CommandKey))})
	}
	senderKM := must1(keys.NewPubKeyMaterial(senderID, senderPriv, c2Pub))
	for _, n := range []int{1, 16, 17, 1024} {
		p := det(fmt.Sprintf("pk-msg-%d", n), n)
		pk.Messages = append(pk.Messages, protectedVec{p, must1(senderKM.ProtectMessage(p, topicKey))})
	}
	v.Pubkey = pk

	must(json.NewEncoder(os.Stdout).Encode(v))
}

type checker struct {
	checked  int
	failures []string
}

func (c *checker) fail(format string, a ...interface{}) {
	c.failures = append(c.failures, fmt.Sprintf(format, a...))
}
func (c *checker) eq(what string, got, want []byte) {
	c.checked++
	if !bytes.Equal(got, want) {
		c.fail("%s: Go computes %x, TypeScript gave %x", what, want, got)
	}
}
func (c *checker) noErr(what string, err error) bool {
	c.checked++
	if err != nil {
		c.fail("%s: %v", what, err)
		return false
	}
	return true
}

func check(in io.Reader) {
	var v vectors
	must(json.NewDecoder(in).Decode(&v))
	c := &checker{}
	for _, x := range v.IDs {
		c.eq("client id of "+x.Name, x.ID, e4crypto.HashIDAlias(x.Name))
		if x.CommandTopic != "" {
			c.checked++
			if x.CommandTopic != e4.TopicForID(x.ID) {
				c.fail("command topic of %s: Go %s, TypeScript %s", x.Name, e4.TopicForID(x.ID), x.CommandTopic)
			}
		}
	}
	for _, x := range v.Topics {
		c.eq("topic hash of "+x.Topic, x.Hash, e4crypto.HashTopic(x.Topic))
	}
	for _, a := range v.Argon2i {
		c.eq(fmt.Sprintf("argon2i(%q, t=%d m=%d p=%d)", a.Password, a.T, a.MKiB, a.P), a.Key, argon2.Key([]byte(a.Password), nil, a.T, a.MKiB, a.P, a.DkLen))
	}
	if pk := v.PasswordKeys; pk != nil {
		c.eq("DeriveSymKey", pk.SymKey, must1(e4crypto.DeriveSymKey(pk.Password)))
		if len(pk.Ed25519Private) > 0 {
			c.eq("Ed25519PrivateKeyFromPassword", pk.Ed25519Private, must1(e4crypto.Ed25519PrivateKeyFromPassword(pk.Password)))
		}
	}
	for i, s := range v.SIV {
		ads := make([][]byte, len(s.AD))
		for j := range s.AD {
			ads[j] = s.AD[j]
		}
		sc := must1(miscreant.NewAESCMACSIV(s.Key))
		pt, err := sc.Open(nil, s.Sealed, ads...)
		if c.noErr(fmt.Sprintf("siv[%d] open", i), err) {
			c.eq(fmt.Sprintf("siv[%d] plaintext", i), s.Plaintext, pt)
		}
	}
	for _, x := range v.Commands {
		want, err := buildCommand(x)
		if c.noErr("build "+x.Type, err) {
			c.eq("command "+x.Type, x.Bytes, want)
		}
	}
	if d := v.DbValues; d != nil {
		dbKey := must1(e4crypto.DeriveSymKey(d.Passphrase))
		c.eq("DB key", d.DbKey, dbKey)
		for i, x := range d.Values {
			pt, err := e4crypto.Decrypt(dbKey, nil, x.Sealed)
			if c.noErr(fmt.Sprintf("C2 opens DB value %d", i), err) {
				c.eq(fmt.Sprintf("DB value %d", i), x.Plain, pt)
			}
		}
	}
	if s := v.Symkey; s != nil {
		cl := must1(e4.NewClient(&e4.SymIDAndKey{ID: s.DeviceID, Key: s.DeviceKey}, e4.NewInMemoryStore(nil)))
		for i, x := range s.Commands {
			pt, err := e4crypto.UnprotectSymKey(x.Protected, s.DeviceKey)
			if c.noErr(fmt.Sprintf("symkey command %d unprotect", i), err) {
				c.eq(fmt.Sprintf("symkey command %d", i), x.Payload, pt)
			}
			_, err = cl.Unprotect(x.Protected, cl.GetReceivingTopic())
			c.noErr(fmt.Sprintf("e4go symkey client processes command %d (%x)", i, x.Payload), err)
		}
		for i, x := range s.Messages {
			pt, err := cl.Unprotect(x.Protected, s.Topic)
			if c.noErr(fmt.Sprintf("e4go symkey client reads message %d", i), err) {
				c.eq(fmt.Sprintf("symkey message %d", i), x.Payload, pt)
			}
		}
	}
	if p := v.Pubkey; p != nil {
		cl := must1(e4.NewClient(&e4.PubIDAndKey{ID: p.DeviceID, Key: p.DeviceEd25519Private, C2PubKey: p.C2Public}, e4.NewInMemoryStore(nil)))
		for i, x := range p.Commands {
			_, err := cl.Unprotect(x.Protected, cl.GetReceivingTopic())
			c.noErr(fmt.Sprintf("e4go pubkey client processes command %d (%x)", i, x.Payload), err)
		}
		for i, x := range p.Messages {
			pt, err := cl.Unprotect(x.Protected, p.Topic)
			if c.noErr(fmt.Sprintf("e4go pubkey client reads signed message %d", i), err) {
				c.eq(fmt.Sprintf("pubkey message %d", i), x.Payload, pt)
			}
		}
		if len(p.C2Private) > 0 && len(p.CommandKey) > 0 {
			c.eq("C2 command key for device", p.CommandKey, c2CommandKey(p.C2Private, ed25519.PrivateKey(p.DeviceEd25519Private).Public().(ed25519.PublicKey)))
		}
		if len(p.DeviceCurvePublic) > 0 {
			c.eq("Ed25519→X25519 public", p.DeviceCurvePublic, e4crypto.PublicEd25519KeyToCurve25519(ed25519.PrivateKey(p.DeviceEd25519Private).Public().(ed25519.PublicKey)))
		}
		if len(p.DeviceCurvePrivate) > 0 {
			c.eq("Ed25519→X25519 private", p.DeviceCurvePrivate, e4crypto.PrivateEd25519KeyToCurve25519(p.DeviceEd25519Private))
		}
	}
	ok := len(c.failures) == 0 && c.checked > 0
	must(json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"ok": ok, "checked": c.checked, "failures": c.failures}))
	if !ok {
		os.Exit(1)
	}
}

func buildCommand(x cmdVec) ([]byte, error) {
	h := func(k string) []byte { b, _ := hex.DecodeString(x.Args[k]); return b }
	switch x.Type {
	case "RemoveTopic":
		return e4.CmdRemoveTopic(x.Args["topic"])
	case "ResetTopics":
		return e4.CmdResetTopics()
	case "SetIdKey":
		return e4.CmdSetIDKey(h("key"))
	case "SetTopicKey":
		return e4.CmdSetTopicKey(h("key"), x.Args["topic"])
	case "RemovePubKey":
		return e4.CmdRemovePubKey(x.Args["name"])
	case "ResetPubKeys":
		return e4.CmdResetPubKeys()
	case "SetPubKey":
		return e4.CmdSetPubKey(h("publicKey"), x.Args["name"])
	case "SetC2Key":
		return e4.CmdSetC2Key(h("publicKey"))
	}
	return nil, fmt.Errorf("unknown command type %q", x.Type)
}

func argon2Time() {
	pw := "benchmark passphrase 0001"
	start := time.Now()
	key := must1(e4crypto.DeriveSymKey(pw))
	el := time.Since(start).Seconds()
	must(json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"seconds": el, "key": hex.EncodeToString(key), "password": pw}))
}

// unprotectThroughput times e4go's UnprotectSymKey on 1 KiB messages (the baseline for bench/e4.ts).
func unprotectThroughput(count int) {
	key := det("bench-key", 32)
	msgs := make([][]byte, 1000)
	for i := range msgs {
		msgs[i] = must1(e4crypto.ProtectSymKey(det(fmt.Sprintf("bench-%d", i), 1024), key))
	}
	start := time.Now()
	for i := 0; i < count; i++ {
		if _, err := e4crypto.UnprotectSymKey(msgs[i%len(msgs)], key); err != nil {
			must(err)
		}
	}
	el := time.Since(start).Seconds()
	must(json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"seconds": el, "messages": count, "bytes": count * 1024}))
}

func main() {
	mode := "emit"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "emit":
		emit()
	case "check":
		check(os.Stdin)
	case "argon2-time":
		argon2Time()
	case "unprotect-throughput":
		n := 50000
		if len(os.Args) > 2 {
			fmt.Sscan(os.Args[2], &n)
		}
		unprotectThroughput(n)
	default:
		fmt.Fprintln(os.Stderr, "usage: go-vectors emit | check < ts-values.json | argon2-time | unprotect-throughput [N]")
		os.Exit(2)
	}
}
