// e4go-devices: real E4 devices built on e4go v1.1.0 and paho.mqtt.golang, for tests that must show
// what an actual device sees (not the project's simulator). One process hosts many devices; it is
// driven by one JSON request per stdin line and answers one JSON line per request on stdout:
//
//	{"id":1,"op":"add","name":"dev-1","key":"<hex32>","broker":"tcp://127.0.0.1:1883",
//	 "clientId":"dev-1","clean":true,"qos":1,"topics":["t1","t2"],"offline":false}
//	{"id":2,"op":"offline","name":"dev-1"}      disconnect (a persistent session stays on the broker)
//	{"id":3,"op":"online","name":"dev-1"}       reconnect with the same client id and session flag
//	{"id":4,"op":"publish","name":"dev-1","topic":"t1","payload":"hello"}   protect with e4go, QoS 1
//	{"id":5,"op":"report","name":"dev-1"}       topic keys held, identity key, commands processed, messages read
//	{"id":6,"op":"clear","name":"dev-1"}        forget the messages read so far
//	{"id":7,"op":"remove","name":"dev-1"}       disconnect and forget the device
//
// Answers: {"id":N,"ok":true,...} or {"id":N,"ok":false,"error":"..."}. The device state (identity
// key, topic keys, previous keys for 60 minutes) lives in e4go's client, kept in memory across
// offline/online, exactly as a device that keeps its state file does.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	e4 "github.com/teserakt-io/e4go"
	e4crypto "github.com/teserakt-io/e4go/crypto"
)

type request struct {
	ID       int      `json:"id"`
	Op       string   `json:"op"`
	Name     string   `json:"name"`
	Key      string   `json:"key"`
	Broker   string   `json:"broker"`
	ClientID string   `json:"clientId"`
	Clean    bool     `json:"clean"`
	QoS      byte     `json:"qos"`
	Topics   []string `json:"topics"`
	Offline  bool     `json:"offline"`
	Topic    string   `json:"topic"`
	Payload  string   `json:"payload"`
}

type received struct {
	Topic   string `json:"topic"`
	Payload string `json:"payload,omitempty"`
	Error   string `json:"error,omitempty"`
}

type device struct {
	mu        sync.Mutex
	name      string
	e4c       e4.Client
	store     e4.ReadWriteSeeker
	opts      request
	conn      mqtt.Client
	cmdOK     int
	cmdFailed int
	cmdErrors []string
	messages  []received
}

var (
	devices = map[string]*device{}
	devMu   sync.Mutex
	outMu   sync.Mutex
)

func reply(v map[string]interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	b, _ := json.Marshal(v)
	os.Stdout.Write(append(b, '\n'))
}

func (d *device) onMessage(_ mqtt.Client, m mqtt.Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out, err := d.e4c.Unprotect(m.Payload(), m.Topic())
	if d.e4c.IsReceivingTopic(m.Topic()) {
		if err != nil {
			d.cmdFailed++
			if len(d.cmdErrors) < 50 {
				d.cmdErrors = append(d.cmdErrors, err.Error())
			}
		} else {
			d.cmdOK++
		}
		return
	}
	r := received{Topic: m.Topic()}
	if err != nil {
		r.Error = err.Error()
	} else {
		r.Payload = string(out)
	}
	d.messages = append(d.messages, r)
}

func (d *device) connect() error {
	o := mqtt.NewClientOptions().AddBroker(d.opts.Broker).SetClientID(d.opts.ClientID).
		SetCleanSession(d.opts.Clean).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetOrderMatters(true).SetDefaultPublishHandler(d.onMessage)
	c := mqtt.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return fmt.Errorf("connect %s: %v", d.opts.ClientID, t.Error())
	}
	filters := map[string]byte{d.e4c.GetReceivingTopic(): d.opts.QoS}
	for _, t := range d.opts.Topics {
		filters[t] = d.opts.QoS
	}
	if t := c.SubscribeMultiple(filters, d.onMessage); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		c.Disconnect(0)
		return fmt.Errorf("subscribe: %v", t.Error())
	}
	d.conn = c
	return nil
}

func (d *device) disconnect() {
	if d.conn != nil {
		d.conn.Disconnect(100)
		d.conn = nil
	}
}

// savedState reads e4go's saved state (the store holds the JSON e4go writes after every command):
// the topic keys of the spec's topics, and the identity key (which SetIDKey commands change).
func (d *device) savedState() (map[string]string, string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var state struct {
		TopicKeys map[string][]byte
		Key       struct {
			KeyData struct{ Key []byte } `json:"keyData"`
		}
	}
	if _, err := d.store.Seek(0, 0); err != nil {
		return nil, "", err
	}
	if err := json.NewDecoder(d.store).Decode(&state); err != nil {
		return nil, "", err
	}
	if _, err := d.store.Seek(0, 0); err != nil {
		return nil, "", err
	}
	out := map[string]string{}
	for _, t := range d.opts.Topics {
		h := hex.EncodeToString(e4crypto.HashTopic(t))
		if k, ok := state.TopicKeys[h]; ok {
			out[t] = hex.EncodeToString(k)
		}
	}
	return out, hex.EncodeToString(state.Key.KeyData.Key), nil
}

func find(name string) (*device, error) {
	devMu.Lock()
	defer devMu.Unlock()
	d, ok := devices[name]
	if !ok {
		return nil, fmt.Errorf("no device %q", name)
	}
	return d, nil
}

func add(r request) (map[string]interface{}, error) {
	key, err := hex.DecodeString(r.Key)
	if err != nil || len(key) != e4crypto.KeyLen {
		return nil, errors.New("key must be 32 bytes of hex")
	}
	if r.ClientID == "" {
		r.ClientID = r.Name
	}
	store := e4.NewInMemoryStore(nil)
	c, err := e4.NewClient(&e4.SymIDAndKey{ID: e4crypto.HashIDAlias(r.Name), Key: key}, store)
	if err != nil {
		return nil, err
	}
	d := &device{name: r.Name, e4c: c, store: store, opts: r}
	devMu.Lock()
	if _, dup := devices[r.Name]; dup {
		devMu.Unlock()
		return nil, fmt.Errorf("device %q exists", r.Name)
	}
	devices[r.Name] = d
	devMu.Unlock()
	if !r.Offline {
		if err := d.connect(); err != nil {
			return nil, err
		}
	}
	return map[string]interface{}{"commandTopic": c.GetReceivingTopic()}, nil
}

func handle(r request) (map[string]interface{}, error) {
	if r.Op == "add" {
		return add(r)
	}
	d, err := find(r.Name)
	if err != nil {
		return nil, err
	}
	switch r.Op {
	case "offline":
		d.disconnect()
		return nil, nil
	case "online":
		if d.conn != nil {
			return nil, errors.New("already online")
		}
		return nil, d.connect()
	case "publish":
		if d.conn == nil {
			return nil, errors.New("offline")
		}
		p, err := d.e4c.ProtectMessage([]byte(r.Payload), r.Topic)
		if err != nil {
			return nil, err
		}
		t := d.conn.Publish(r.Topic, 1, false, p)
		if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			return nil, fmt.Errorf("publish: %v", t.Error())
		}
		return nil, nil
	case "report":
		keys, idKey, err := d.savedState()
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		msgs := append([]received{}, d.messages...)
		sort.SliceStable(msgs, func(i, j int) bool { return msgs[i].Topic < msgs[j].Topic })
		return map[string]interface{}{"online": d.conn != nil, "topicKeys": keys, "identityKey": idKey, "commandsOk": d.cmdOK,
			"commandsFailed": d.cmdFailed, "commandErrors": d.cmdErrors, "messages": msgs}, nil
	case "clear":
		d.mu.Lock()
		d.messages = nil
		d.mu.Unlock()
		return nil, nil
	case "remove":
		d.disconnect()
		devMu.Lock()
		delete(devices, r.Name)
		devMu.Unlock()
		return nil, nil
	}
	return nil, fmt.Errorf("unknown op %q", r.Op)
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	var wg sync.WaitGroup
	for in.Scan() {
		var r request
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			reply(map[string]interface{}{"id": 0, "ok": false, "error": "bad request: " + err.Error()})
			continue
		}
		wg.Add(1)
		// requests run concurrently (many devices connect at once); one device's requests are
		// ordered by the caller, which waits for each answer.
		go func(r request) {
			defer wg.Done()
			res, err := handle(r)
			if res == nil {
				res = map[string]interface{}{}
			}
			res["id"] = r.ID
			res["ok"] = err == nil
			if err != nil {
				res["error"] = err.Error()
			}
			reply(res)
		}(r)
	}
	wg.Wait()
	devMu.Lock()
	for _, d := range devices {
		d.disconnect()
	}
	devMu.Unlock()
}
