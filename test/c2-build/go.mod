module e4ops.local/c2-build

go 1.12

require (
	github.com/chzyer/test v1.0.0 // indirect
	github.com/teserakt-io/c2 v0.0.0-20190913090940-33c5be11fcd2
	gopkg.in/jcmturner/goidentity.v3 v3.0.0 // indirect
)
