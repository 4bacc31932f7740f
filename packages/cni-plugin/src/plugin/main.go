// Command nodenet is nodenet's CNI plugin: it forwards each call to nodenetd over a unix socket (one JSON
// line each way) and prints what the daemon answers. All logic lives in the daemon; this binary stays
// small so that its own cost on every container start is a few milliseconds (exec, connect, write, read).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// defaultSocket is where nodenetd's cni.listen puts the socket by default.
const defaultSocket = "/run/nodenet/cni.sock"

// supported are the spec versions nodenetd answers in (GC and STATUS need 1.1.0).
var supported = version.PluginSupports("0.3.1", "0.4.0", "1.0.0", "1.1.0")

// request is what the daemon reads: the CNI_* variables and the network config, unchanged.
type request struct {
	Command     string          `json:"command"`
	ContainerID string          `json:"containerId"`
	Netns       string          `json:"netns"`
	Ifname      string          `json:"ifname"`
	Args        string          `json:"args"`
	Path        string          `json:"path"`
	Config      json.RawMessage `json:"config"`
}

type reply struct {
	Result json.RawMessage `json:"result"`
	Error  *types.Error    `json:"error"`
}

func main() {
	// skel 1.1.2 predates GC and STATUS (spec 1.1.0): those two are dispatched here.
	switch cmd := os.Getenv("CNI_COMMAND"); cmd {
	case "GC", "STATUS":
		stdin, err := io.ReadAll(os.Stdin)
		if err != nil {
			exitWith(types.NewError(types.ErrIOFailure, "cannot read the network config from stdin", err.Error()))
		}
		if !json.Valid(stdin) {
			exitWith(types.NewError(types.ErrDecodingFailure, "the network config on stdin is not JSON", ""))
		}
		args := &skel.CmdArgs{Path: os.Getenv("CNI_PATH"), Args: os.Getenv("CNI_ARGS"), StdinData: stdin}
		if err := forward(cmd, args); err != nil {
			exitWith(err)
		}
		return
	}
	skel.PluginMain(asError("ADD"), asError("CHECK"), asError("DEL"),
		supported,
		"CNI plugin nodenet (forwards to nodenetd)",
	)
}

// asError adapts forward to skel's callbacks (a nil *types.Error must become a nil error, not a typed nil).
func asError(command string) func(*skel.CmdArgs) error {
	return func(a *skel.CmdArgs) error {
		if e := forward(command, a); e != nil {
			return e
		}
		return nil
	}
}

func exitWith(e *types.Error) {
	_ = e.Print()
	os.Exit(1)
}

// forward sends one call to nodenetd and prints its result (ADD); a CNI error object is returned as is.
func forward(command string, a *skel.CmdArgs) *types.Error {
	socket, err := socketOf(a.StdinData)
	if err != nil {
		return err
	}
	line, jerr := json.Marshal(request{command, a.ContainerID, a.Netns, a.IfName, a.Args, a.Path, a.StdinData})
	if jerr != nil {
		return types.NewError(types.ErrDecodingFailure, "cannot encode the request for nodenetd", jerr.Error())
	}
	conn, derr := net.DialTimeout("unix", socket, 5*time.Second)
	if derr != nil {
		code := uint(types.ErrTryAgainLater)
		if command == "STATUS" {
			code = 50 // the spec's "plugin not available"
		}
		return types.NewError(code, fmt.Sprintf("nodenetd is not answering on %s: try again later (start nodenetd; the conflist's socket must be its cni.listen)", socket), derr.Error())
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, werr := conn.Write(append(line, '\n')); werr != nil {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("nodenetd closed %s while the request was sent: try again later", socket), werr.Error())
	}
	data, rerr := io.ReadAll(conn) // the daemon answers one line and closes
	if rerr != nil || len(data) == 0 {
		detail := "no answer"
		if rerr != nil {
			detail = rerr.Error()
		}
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("nodenetd closed %s without answering (stopping?): try again later", socket), detail)
	}
	var r reply
	if uerr := json.Unmarshal(data, &r); uerr != nil {
		return types.NewError(types.ErrInternal, "nodenetd's answer is not JSON", uerr.Error())
	}
	if r.Error != nil {
		return r.Error
	}
	if command == "ADD" {
		if _, werr := os.Stdout.Write(append(r.Result, '\n')); werr != nil {
			return types.NewError(types.ErrIOFailure, "cannot write the result", werr.Error())
		}
	}
	return nil
}

// socketOf reads the conflist's `socket` key (the rest of the config is the daemon's to check).
func socketOf(config []byte) (string, *types.Error) {
	var c struct {
		Socket *string `json:"socket"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return "", types.NewError(types.ErrDecodingFailure, "the network config is not a JSON object", err.Error())
	}
	if c.Socket == nil || *c.Socket == "" {
		return defaultSocket, nil
	}
	return *c.Socket, nil
}
