module e4ops/test/e4go-devices

go 1.22

require (
	github.com/eclipse/paho.mqtt.golang v1.2.0
	github.com/teserakt-io/e4go v1.1.0
)

require (
	github.com/miscreant/miscreant.go v0.0.0-20190903041724-6bebe170cbaf // indirect
	github.com/teserakt-io/golang-ed25519 v0.0.0-20200315192543-8255be791ce4 // indirect
	golang.org/x/crypto v0.0.0-20200302210943-78000ba7a073 // indirect
	golang.org/x/net v0.0.0-20190620200207-3b0461eec859 // indirect
	golang.org/x/sys v0.0.0-20190412213103-97732733099d // indirect
)
