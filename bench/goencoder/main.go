// Command goencoder re-encodes JPEG files the way the old service did:
// decode with Go's standard library, encode with image/jpeg at a fixed quality.
//
// Usage: goencoder -quality 60 INPUT OUTPUT [INPUT OUTPUT ...]
package main

import (
	"flag"
	"fmt"
	"image"
	"image/jpeg"
	"os"
)

func main() {
	quality := flag.Int("quality", 60, "JPEG quality (1-100)")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 || len(args)%2 != 0 {
		fmt.Fprintln(os.Stderr, "usage: goencoder -quality Q INPUT OUTPUT [INPUT OUTPUT ...]")
		os.Exit(2)
	}
	for i := 0; i < len(args); i += 2 {
		if err := convert(args[i], args[i+1], *quality); err != nil {
			fmt.Fprintf(os.Stderr, "goencoder: %s: %v\n", args[i], err)
			os.Exit(1)
		}
	}
}

func convert(input, output string, quality int) error {
	in, err := os.Open(input)
	if err != nil {
		return err
	}
	defer in.Close()
	img, _, err := image.Decode(in)
	if err != nil {
		return err
	}
	out, err := os.Create(output)
	if err != nil {
		return err
	}
	if err := jpeg.Encode(out, img, &jpeg.Options{Quality: quality}); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
