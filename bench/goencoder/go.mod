module imagecore/bench/goencoder

go 1.22
