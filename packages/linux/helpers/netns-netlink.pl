# nodenet's instance-namespace configurator: a long-lived helper that configures an instance's interface
# inside its network namespace over rtnetlink, without a process per instance. Node cannot open netlink
# sockets; spawning `nsenter ... ip -batch` per create costs ~4 ms of CPU (fork + two execs). This program
# (perl-base only: always installed on Debian) enters the namespace with setns(2) just long enough to open a
# NETLINK_ROUTE socket there (a socket stays bound to the namespace it was made in), returns to its own
# namespace and sends the same requests `ip` would.
#
# It can also make the veth pair itself (from the helper's own namespace, the node's): one process and one
# round trip per create instead of an `ip` session's and then this helper's, which on an idle VM is where a
# create's time goes (each hand-off between processes wakes a sleeping CPU).
#
# One request per line on stdin, tab-separated (every field is validated by the caller; none holds a tab):
#   configure <namespace path> <current name> <new name> <address> <prefix length> <broadcast> <gateway>
#             <ipv6 address> <ipv6 prefix length> <ipv6 gateway>
#   create-veth <host name> <mtu> <bridge> <owner alias> <peer name> <peer mac> <namespace path> <new name>
#               <address> <prefix length> <broadcast> <gateway> <ipv6 address> <ipv6 prefix length> <ipv6 gateway>
#   (a family the instance does not have: its fields empty; the IPv6 address goes without duplicate address
#   detection, as `ip address add ... nodad`)
#     = `ip link add name HOST mtu MTU master BRIDGE type veth peer name PEER address MAC mtu MTU netns PATH`,
#       `ip link set dev HOST alias ALIAS addrgenmode none up type bridge_slave hairpin on`, then configure.
# Answers go to stderr: nothing on success, else one line `fail <step> <message>` where step is one of
# create-link, attach-link (node side), open-namespace, find-link, rename, instance-address,
# instance-ipv6-address, instance-up, loopback-up, default-route, default-ipv6-route (the ids of the equivalent `ip -batch` lines) and message reads like ip's
# (`RTNETLINK answers: File exists`). A line `mark N` is answered `done N` on stderr (the session's marker).
use strict;
use warnings;
use Config;
use Socket qw(AF_INET inet_aton inet_pton);

my %SETNS = ('x86_64' => 308, 'aarch64' => 268, 'i386' => 346, 'arm' => 375, 'ppc64le' => 350, 's390x' => 339);
my ($arch) = $Config{archname} =~ /^([a-z0-9_]+)/;
$arch = 'ppc64le' if $arch eq 'powerpc64le';
my $SYS_SETNS = $SETNS{$arch} // die "unsupported architecture $Config{archname}\n";
my $CLONE_NEWNET = 0x40000000;
my ($AF_NETLINK, $SOCK_RAW, $NETLINK_ROUTE) = (16, 3, 0);
my ($NLM_F_REQUEST, $NLM_F_ACK, $NLM_F_EXCL, $NLM_F_CREATE) = (1, 4, 0x200, 0x400);
my ($RTM_NEWLINK, $RTM_GETLINK, $RTM_NEWADDR, $RTM_NEWROUTE, $NLMSG_ERROR) = (16, 18, 20, 24, 2);
my ($IFLA_IFNAME, $IFA_ADDRESS, $IFA_LOCAL, $IFA_BROADCAST, $RTA_OIF, $RTA_GATEWAY) = (3, 1, 2, 4, 4, 5);
my ($IFLA_ADDRESS, $IFLA_MTU, $IFLA_MASTER, $IFLA_LINKINFO, $IFLA_IFALIAS, $IFLA_AF_SPEC, $IFLA_NET_NS_FD) = (1, 4, 10, 18, 20, 26, 28);
my ($IFLA_INFO_KIND, $IFLA_INFO_DATA, $IFLA_INFO_SLAVE_KIND, $IFLA_INFO_SLAVE_DATA, $VETH_INFO_PEER) = (1, 2, 4, 5, 1);
my ($AF_INET6, $IFLA_INET6_ADDR_GEN_MODE, $IN6_ADDR_GEN_MODE_NONE, $IFLA_BRPORT_MODE) = (10, 8, 1, 4);
my ($IFF_UP, $IFA_F_NODAD) = (1, 0x02);

open(my $own_ns, '<', '/proc/self/ns/net') or die "cannot open /proc/self/ns/net: $!\n";
$| = 1;
select(STDERR); $| = 1; select(STDOUT);
my $seq = 0;

sub setns_fd { my ($fh) = @_; return syscall($SYS_SETNS, fileno($fh), $CLONE_NEWNET) == 0; }

sub rta { my ($type, $data) = @_; my $len = 4 + length($data); return pack('SS', $len, $type) . $data . ("\0" x ((4 - $len % 4) % 4)); }

# Sends one request and waits for its answer: undef on success, the kernel's errno otherwise. With
# $want_reply, returns the first non-error message's payload instead.
sub talk {
  my ($sock, $type, $flags, $body, $want_reply) = @_;
  $seq++;
  my $msg = pack('LSSLL', 16 + length($body), $type, $flags, $seq, 0) . $body;
  defined(send($sock, $msg, 0)) or return ($! + 0);
  for (;;) {
    my $buf = '';
    defined(recv($sock, $buf, 65536, 0)) or return ($! + 0);
    my $off = 0;
    while ($off + 16 <= length($buf)) {
      my ($len, $mtype, undef, $mseq) = unpack('LSSL', substr($buf, $off, 16));
      last if $len < 16;
      if ($mseq == $seq) {
        if ($mtype == $NLMSG_ERROR) {
          my $err = unpack('l', substr($buf, $off + 16, 4));
          return $err == 0 ? undef : -$err;
        }
        return \substr($buf, $off + 16, $len - 16) if $want_reply;
      }
      $off += ($len + 3) & ~3;
    }
  }
}

sub strerror { my ($errno) = @_; local $! = $errno; return "$!"; }

# @addresses: address, prefix length, broadcast, gateway, ipv6 address, ipv6 prefix length, ipv6 gateway.
sub configure {
  my ($path, $current, $name, @addresses) = @_;
  my $target;
  unless (open($target, '<', $path)) { return ('open-namespace', "Cannot open network namespace \"$path\": " . strerror($! + 0)); }
  my @failure = configure_in($target, $path, $current, $name, @addresses);
  close($target);
  return @failure;
}

# Configures link $current inside the namespace open as $target.
sub configure_in {
  my ($target, $path, $current, $name, @addresses) = @_;
  unless (setns_fd($target)) { return ('open-namespace', "setting the network namespace \"$path\" failed: " . strerror($! + 0)); }
  my $sock;
  my $made = socket($sock, $AF_NETLINK, $SOCK_RAW, $NETLINK_ROUTE);
  my $socket_errno = $! + 0;
  setns_fd($own_ns) or die "cannot return to the daemon's own network namespace: $!\n";
  return ('open-namespace', 'cannot open a netlink socket: ' . strerror($socket_errno)) unless $made;
  my @failure = run_steps($sock, $current, $name, @addresses);
  close($sock);
  return @failure;
}

my $own_sock;
# A netlink socket in the helper's own namespace (the node's), opened on first use.
sub own_socket {
  return $own_sock if $own_sock;
  socket($own_sock, $AF_NETLINK, $SOCK_RAW, $NETLINK_ROUTE) or do { my $e = $! + 0; undef $own_sock; return (undef, $e); };
  return $own_sock;
}

sub index_of {
  my ($sock, $name) = @_;
  my $reply = talk($sock, $RTM_GETLINK, $NLM_F_REQUEST, pack('CxSiII', 0, 0, 0, 0, 0) . rta($IFLA_IFNAME, "$name\0"), 1);
  return (undef, $reply) unless ref $reply;
  my (undef, undef, $index) = unpack('CxSi', $$reply);
  return $index;
}

sub create_veth {
  my ($host, $mtu, $bridge, $alias, $peer, $mac, $path, $name, @addresses) = @_;
  my ($sock, $socket_errno) = own_socket();
  return ('create-link', 'cannot open a netlink socket: ' . strerror($socket_errno)) unless $sock;
  my ($bridge_index, $err) = index_of($sock, $bridge);
  return ('create-link', "Cannot find device \"$bridge\": " . strerror($err)) unless defined $bridge_index;
  my $target;
  # What `ip` says when it cannot open the netns argument.
  return ('create-link', "Invalid \"netns\" value \"$path\": " . strerror($! + 0)) unless open($target, '<', $path);
  (my $hex = $mac) =~ s/://g;
  my $peer_info = pack('CxSiII', 0, 0, 0, 0, 0) . rta($IFLA_IFNAME, "$peer\0") . rta($IFLA_ADDRESS, pack('H12', $hex))
    . rta($IFLA_MTU, pack('L', $mtu)) . rta($IFLA_NET_NS_FD, pack('L', fileno($target)));
  my $linkinfo = rta($IFLA_INFO_KIND, "veth") . rta($IFLA_INFO_DATA, rta($VETH_INFO_PEER, $peer_info));
  $err = talk($sock, $RTM_NEWLINK, $NLM_F_REQUEST | $NLM_F_ACK | $NLM_F_CREATE | $NLM_F_EXCL,
    pack('CxSiII', 0, 0, 0, 0, 0) . rta($IFLA_IFNAME, "$host\0") . rta($IFLA_MTU, pack('L', $mtu))
    . rta($IFLA_MASTER, pack('L', $bridge_index)) . rta($IFLA_LINKINFO, $linkinfo));
  if (defined $err) { close($target); return ('create-link', 'RTNETLINK answers: ' . strerror($err)); }
  my $host_index;
  ($host_index, $err) = index_of($sock, $host);
  unless (defined $host_index) { close($target); return ('attach-link', "Cannot find device \"$host\": " . strerror($err)); }
  my $af_spec = rta($AF_INET6, rta($IFLA_INET6_ADDR_GEN_MODE, pack('C', $IN6_ADDR_GEN_MODE_NONE)));
  my $slave = rta($IFLA_INFO_SLAVE_KIND, "bridge") . rta($IFLA_INFO_SLAVE_DATA, rta($IFLA_BRPORT_MODE, pack('C', 1)));
  $err = talk($sock, $RTM_NEWLINK, $NLM_F_REQUEST | $NLM_F_ACK,
    pack('CxSiII', 0, 0, $host_index, $IFF_UP, $IFF_UP) . rta($IFLA_IFALIAS, $alias) . rta($IFLA_AF_SPEC, $af_spec) . rta($IFLA_LINKINFO, $slave));
  if (defined $err) { close($target); return ('attach-link', 'RTNETLINK answers: ' . strerror($err)); }
  my @failure = configure_in($target, $path, $peer, $name, @addresses);
  close($target);
  return @failure;
}

sub run_steps {
  my ($sock, $current, $name, $address, $prefix, $broadcast, $gateway, $address6, $prefix6, $gateway6) = @_;
  my $ack = $NLM_F_REQUEST | $NLM_F_ACK;
  my $reply = talk($sock, $RTM_GETLINK, $NLM_F_REQUEST, pack('CxSiII', 0, 0, 0, 0, 0) . rta($IFLA_IFNAME, "$current\0"), 1);
  return ('find-link', "Cannot find device \"$current\": " . strerror($reply)) unless ref $reply;
  my (undef, undef, $index) = unpack('CxSi', $$reply);
  my $err;
  if ($name ne $current) {
    $err = talk($sock, $RTM_NEWLINK, $ack, pack('CxSiII', 0, 0, $index, 0, 0) . rta($IFLA_IFNAME, "$name\0"));
    return ('rename', 'RTNETLINK answers: ' . strerror($err)) if defined $err;
  }
  if ($address ne '') {
    my $addr = inet_aton($address);
    $err = talk($sock, $RTM_NEWADDR, $ack | $NLM_F_CREATE | $NLM_F_EXCL,
      pack('CCCCL', AF_INET, $prefix, 0, 0, $index) . rta($IFA_LOCAL, $addr) . rta($IFA_ADDRESS, $addr) . rta($IFA_BROADCAST, inet_aton($broadcast)));
    return ('instance-address', 'RTNETLINK answers: ' . strerror($err)) if defined $err;
  }
  if ($address6 ne '') {
    my $addr = inet_pton($AF_INET6, $address6);
    $err = talk($sock, $RTM_NEWADDR, $ack | $NLM_F_CREATE | $NLM_F_EXCL,
      pack('CCCCL', $AF_INET6, $prefix6, $IFA_F_NODAD, 0, $index) . rta($IFA_LOCAL, $addr) . rta($IFA_ADDRESS, $addr));
    return ('instance-ipv6-address', 'RTNETLINK answers: ' . strerror($err)) if defined $err;
  }
  $err = talk($sock, $RTM_NEWLINK, $ack, pack('CxSiII', 0, 0, $index, $IFF_UP, $IFF_UP));
  return ('instance-up', 'RTNETLINK answers: ' . strerror($err)) if defined $err;
  # The loopback device is the first a namespace registers: ifindex 1.
  $err = talk($sock, $RTM_NEWLINK, $ack, pack('CxSiII', 0, 0, 1, $IFF_UP, $IFF_UP));
  return ('loopback-up', 'RTNETLINK answers: ' . strerror($err)) if defined $err;
  # main table, proto boot, scope universe, unicast: what `ip route add default via GW dev IF` sends.
  if ($gateway ne '') {
    $err = talk($sock, $RTM_NEWROUTE, $ack | $NLM_F_CREATE | $NLM_F_EXCL,
      pack('CCCCCCCCL', AF_INET, 0, 0, 0, 254, 3, 0, 1, 0) . rta($RTA_GATEWAY, inet_aton($gateway)) . rta($RTA_OIF, pack('L', $index)));
    return ('default-route', 'RTNETLINK answers: ' . strerror($err)) if defined $err;
  }
  if ($gateway6 ne '') {
    $err = talk($sock, $RTM_NEWROUTE, $ack | $NLM_F_CREATE | $NLM_F_EXCL,
      pack('CCCCCCCCL', $AF_INET6, 0, 0, 0, 254, 3, 0, 1, 0) . rta($RTA_GATEWAY, inet_pton($AF_INET6, $gateway6)) . rta($RTA_OIF, pack('L', $index)));
    return ('default-ipv6-route', 'RTNETLINK answers: ' . strerror($err)) if defined $err;
  }
  return ();
}

while (my $line = <STDIN>) {
  chomp $line;
  if ($line =~ /^mark (\d+)$/) { print STDERR "done $1\n"; next; }
  my @f = split /\t/, $line, -1;
  if (@f == 11 && $f[0] eq 'configure') {
    my @failure = configure(@f[1 .. 10]);
    print STDERR "fail $failure[0] $failure[1]\n" if @failure;
    next;
  }
  if (@f == 16 && $f[0] eq 'create-veth') {
    my @failure = create_veth(@f[1 .. 15]);
    print STDERR "fail $failure[0] $failure[1]\n" if @failure;
    next;
  }
  print STDERR "fail request unknown request\n";
}
