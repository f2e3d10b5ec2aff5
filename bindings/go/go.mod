module github.com/aether-cache/libaethercache/bindings/go

go 1.19
