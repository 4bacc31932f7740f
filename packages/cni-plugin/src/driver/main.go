// Command cni-driver runs a conflist through libcni (as Podman and containerd do): ADD, CHECK or DEL for one
// container, or `bench` (timed ADD/DEL cycles over several conflists, interleaved). It prints one JSON line:
// {"ok":true,"result":...} or {"ok":false,"error":{code,msg,details}}. Used by the tests and the benchmark.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

type output struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *types.Error    `json:"error,omitempty"`
}

func main() {
	op := flag.String("op", "", "add | check | del | bench | plugin-cost")
	conflist := flag.String("conflist", "", "the conflist file (bench: comma-separated)")
	id := flag.String("id", "", "the container id (bench: a prefix)")
	netns := flag.String("netns", "", "the container's network namespace path (bench: comma-separated, one per conflist)")
	ifname := flag.String("ifname", "eth0", "the interface name in the container")
	ports := flag.String("ports", "", `portMappings capability, JSON: [{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]`)
	ips := flag.String("ips", "", `ips capability, JSON: ["198.19.1.9/24"]`)
	pluginDirs := flag.String("path", "/usr/lib/cni", "plugin directories, colon-separated (plugin-cost: the nodenet binary)")
	cacheDir := flag.String("cache", "", "libcni's cache directory (default: /var/lib/cni)")
	rounds := flag.Int("rounds", 20, "bench: ADD/DEL cycles per conflist")
	pauseMs := flag.Int("pause-ms", 0, "bench: pause before each call")
	flag.Parse()

	cni := libcni.NewCNIConfigWithCacheDir(strings.Split(*pluginDirs, ":"), *cacheDir, nil)
	ctx := context.Background()
	if *op == "plugin-cost" {
		pluginCost(*pluginDirs, *rounds)
		return
	}
	if *op == "bench" {
		bench(ctx, cni, strings.Split(*conflist, ","), strings.Split(*netns, ","), *id, *ifname, *ports, *rounds, time.Duration(*pauseMs)*time.Millisecond)
		return
	}
	list, err := libcni.ConfListFromFile(*conflist)
	if err != nil {
		fail(err)
	}
	rt, err := runtimeConf(*id, *netns, *ifname, *ports, *ips)
	if err != nil {
		fail(err)
	}
	switch *op {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		raw, _ := json.Marshal(result)
		emit(output{OK: true, Result: raw})
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
		emit(output{OK: true})
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
		emit(output{OK: true})
	default:
		fail(fmt.Errorf("unknown -op %q: use add, check, del or bench", *op))
	}
}

func runtimeConf(id, netns, ifname, ports, ips string) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: ifname, Args: [][2]string{{"IgnoreUnknown", "1"}}, CapabilityArgs: map[string]interface{}{}}
	for name, text := range map[string]string{"portMappings": ports, "ips": ips} {
		if text == "" {
			continue
		}
		var v interface{}
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			return nil, fmt.Errorf("-%s: %v", strings.ToLower(name[:1])+name[1:], err)
		}
		rt.CapabilityArgs[name] = v
	}
	return rt, nil
}

// bench runs ADD then DEL for each conflist in turn (interleaved), `rounds` times, and prints the durations in ms.
func bench(ctx context.Context, cni *libcni.CNIConfig, files, namespaces []string, id, ifname, ports string, rounds int, pause time.Duration) {
	type samples struct {
		Name string    `json:"name"`
		Add  []float64 `json:"addMs"`
		Del  []float64 `json:"delMs"`
	}
	lists := make([]*libcni.NetworkConfigList, len(files))
	out := make([]samples, len(files))
	for i, f := range files {
		l, err := libcni.ConfListFromFile(f)
		if err != nil {
			fail(err)
		}
		lists[i] = l
		out[i].Name = strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
	}
	for r := 0; r < rounds; r++ {
		for i, l := range lists {
			rt, err := runtimeConf(fmt.Sprintf("%s-%d-%d", id, i, r), namespaces[i], ifname, ports, "")
			if err != nil {
				fail(err)
			}
			time.Sleep(pause)
			t0 := time.Now()
			if _, err := cni.AddNetworkList(ctx, l, rt); err != nil {
				fail(fmt.Errorf("%s ADD: %w", out[i].Name, err))
			}
			out[i].Add = append(out[i].Add, float64(time.Since(t0).Microseconds())/1000)
			time.Sleep(pause)
			t0 = time.Now()
			if err := cni.DelNetworkList(ctx, l, rt); err != nil {
				fail(fmt.Errorf("%s DEL: %w", out[i].Name, err))
			}
			out[i].Del = append(out[i].Del, float64(time.Since(t0).Microseconds())/1000)
		}
	}
	raw, _ := json.Marshal(out)
	emit(output{OK: true, Result: raw})
}

// pluginCost times the nodenet plugin itself, exec to exit, `rounds` times each: VERSION (no daemon), and ADD
// against a stub daemon in this process that answers at once, so the daemon's work is left out.
func pluginCost(plugin string, rounds int) {
	dir, err := os.MkdirTemp("", "nodenet-plugin-cost-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "cni.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	answer := []byte(`{"result":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:6e:c6:13:01:02","sandbox":"/run/netns/x"}],"ips":[{"address":"198.19.1.2/24","gateway":"198.19.1.1","interface":0}],"routes":[{"dst":"0.0.0.0/0","gw":"198.19.1.1"}],"dns":{}}}` + "\n")
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for n := 0; ; {
					m, err := c.Read(buf[n:])
					n += m
					if err != nil || bytes.IndexByte(buf[:n], '\n') >= 0 {
						break
					}
				}
				_, _ = c.Write(answer)
			}(conn)
		}
	}()
	config := []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"nodenet","type":"nodenet","socket":%q}`, socket))
	run := func(command string) float64 {
		cmd := exec.Command(plugin)
		cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=cost", "CNI_NETNS=/run/netns/x", "CNI_IFNAME=eth0", "CNI_PATH=/usr/lib/cni"}
		cmd.Stdin = bytes.NewReader(config)
		t0 := time.Now()
		out, err := cmd.Output()
		ms := float64(time.Since(t0).Microseconds()) / 1000
		if err != nil {
			fail(fmt.Errorf("%s: %v: %s", command, err, out))
		}
		return ms
	}
	result := map[string][]float64{}
	for r := 0; r < rounds; r++ {
		result["versionMs"] = append(result["versionMs"], run("VERSION"))
		result["addMs"] = append(result["addMs"], run("ADD"))
	}
	raw, _ := json.Marshal(result)
	emit(output{OK: true, Result: raw})
}

func fail(err error) {
	var cniErr *types.Error
	if !errors.As(err, &cniErr) {
		cniErr = &types.Error{Code: types.ErrInternal, Msg: err.Error()}
	}
	emit(output{OK: false, Error: cniErr})
	os.Exit(0)
}

func emit(o output) {
	raw, _ := json.Marshal(o)
	fmt.Println(string(raw))
}
