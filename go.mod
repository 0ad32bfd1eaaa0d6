module github.com/cbfs/cbfs

go 1.26.8

require (
	github.com/google/go-cmp v0.7.0
	github.com/pierrec/lz4/v4 v4.1.33
)
