// Command etcd is the upstream etcd server. `go install` of the etcd server module is refused
// because its go.mod has replace directives, so it is wrapped here.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
