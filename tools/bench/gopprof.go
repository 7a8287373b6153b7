// A Go program serving net/http/pprof, the reference for cprof-bpf serve: what a Go service
// exposes itself. With the argument "burn" it also burns CPU in a loop (so its CPU profile has
// something to show). Answers /healthz with "ok". Prints "ready http://ADDR" once listening.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

var sink uint64

func burn() {
	for {
		for i := uint64(0); i < 1000000; i++ {
			sink += i * i
		}
	}
}

func main() {
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if len(os.Args) > 1 && os.Args[1] == "burn" {
		go burn()
	}
	fmt.Printf("ready http://%s\n", ln.Addr())
	http.Serve(ln, nil)
}
