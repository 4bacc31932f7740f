module nodenet.dev/cni-plugin

go 1.19

require github.com/containernetworking/cni v1.1.2

// Built offline from Debian's golang-github-appc-cni-dev (scripts/build.sh sets GOPROXY=off).
replace github.com/containernetworking/cni => /usr/share/gocode/src/github.com/containernetworking/cni
