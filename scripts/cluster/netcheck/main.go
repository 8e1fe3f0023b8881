// Command netcheck is the cluster tests' network probe, a static binary in the busybox image:
// Debian's static busybox crashes in wget and httpd (static glibc without its NSS modules).
//
//	netcheck serve ADDR TEXT   answer every HTTP request with TEXT
//	netcheck get URL           print the body of URL; exit 1 on an error or a non-2xx status
//	netcheck dial HOST:PORT    open a TCP connection within 3 s and close it; exit 1 if it fails
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: netcheck serve ADDR TEXT | netcheck get URL | netcheck dial HOST:PORT")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		if len(os.Args) != 4 {
			fmt.Fprintln(os.Stderr, "usage: netcheck serve ADDR TEXT")
			os.Exit(2)
		}
		text := os.Args[3]
		server := &http.Server{
			Addr:              os.Args[2],
			ReadHeaderTimeout: 5 * time.Second,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				fmt.Fprintln(w, text)
			}),
		}
		fmt.Fprintln(os.Stderr, server.ListenAndServe())
		os.Exit(1)
	case "get":
		client := &http.Client{Timeout: 5 * time.Second}
		resp, err := client.Get(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer resp.Body.Close()
		if _, err := io.Copy(os.Stdout, resp.Body); err != nil || resp.StatusCode/100 != 2 {
			fmt.Fprintln(os.Stderr, resp.Status, err)
			os.Exit(1)
		}
	case "dial":
		conn, err := net.DialTimeout("tcp", os.Args[2], 3*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		conn.Close()
		fmt.Println("open")
	default:
		fmt.Fprintf(os.Stderr, "netcheck: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}
