# nodenet's connection-tracking cleaner: a long-lived helper that deletes the entries of given addresses over
# ctnetlink, both families in one walk of the table. `conntrack -D` dumps the table once per filter and family
# (-s, -d, -r; -f ipv6 again for an IPv6 address), and a dump walks the kernel's whole conntrack hash, which
# every namespace shares (262,144 buckets on a 24 GiB host: 5-45 ms a dump, idle to loaded). This program
# (perl-base only: always installed on Debian) dumps once, for every family, picks the entries whose original
# source, original destination or reply source is one of the addresses (what `conntrack -D -s`, `-d` and `-r`
# select), and deletes each by its original tuple, zone and id. It runs in the node's namespace (the caller
# starts it there) and opens its netlink socket per request.
#
# One request per line on stdin, tab-separated (the caller validates every address):
#   flush <address> [<address> ...]
# Answers go to stderr: nothing on success, else one line `fail <message>`. An entry gone between the dump
# and its deletion (expired, or deleted by someone else) is no failure. A line `mark N` is answered `done N`
# on stderr (the session's marker).
use strict;
use warnings;
use Socket qw(AF_INET inet_pton);

my ($AF_INET6, $AF_NETLINK, $SOCK_RAW, $NETLINK_NETFILTER) = (10, 16, 3, 12);
my ($NLM_F_REQUEST, $NLM_F_ACK, $NLM_F_DUMP) = (1, 4, 0x300);
my ($NLMSG_ERROR, $NLMSG_DONE) = (2, 3);
# (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW, _GET, _DELETE.
my ($CT_NEW, $CT_GET, $CT_DELETE) = (0x100, 0x101, 0x102);
my ($CTA_TUPLE_ORIG, $CTA_TUPLE_REPLY, $CTA_ID, $CTA_ZONE) = (1, 2, 12, 18);
my $CTA_TUPLE_IP = 1;
my ($CTA_IP_V4_SRC, $CTA_IP_V4_DST, $CTA_IP_V6_SRC, $CTA_IP_V6_DST) = (1, 2, 3, 4);
my $ENOENT = 2;

$| = 1;
select(STDERR); $| = 1; select(STDOUT);
my $seq = 0;

sub strerror { my ($errno) = @_; local $! = $errno; return "$!"; }

sub padded { my ($raw) = @_; return $raw . ("\0" x ((4 - length($raw) % 4) % 4)); }

# The attributes of $data by type (nested flag masked): [payload, the attribute as sent].
sub attrs {
  my ($data) = @_;
  my %a;
  my $off = 0;
  while ($off + 4 <= length($data)) {
    my ($len, $type) = unpack('SS', substr($data, $off, 4));
    last if $len < 4 || $off + $len > length($data);
    $a{$type & 0x3fff} = [substr($data, $off + 4, $len - 4), substr($data, $off, $len)];
    $off += ($len + 3) & ~3;
  }
  return \%a;
}

# A tuple's source and destination addresses (packed; 4 bytes IPv4, 16 IPv6), undef where absent.
sub endpoints {
  my ($tuple) = @_;
  my $ip = attrs($tuple)->{$CTA_TUPLE_IP} or return (undef, undef);
  my $a = attrs($ip->[0]);
  my $src = $a->{$CTA_IP_V4_SRC} // $a->{$CTA_IP_V6_SRC};
  my $dst = $a->{$CTA_IP_V4_DST} // $a->{$CTA_IP_V6_DST};
  return ($src ? $src->[0] : undef, $dst ? $dst->[0] : undef);
}

sub header { my ($len, $type, $flags) = @_; $seq++; return pack('LSSLL', 16 + $len, $type, $flags, $seq, 0); }

# Reads until the answer to request $seq: every message of it goes to $each; returns the kernel's errno or undef.
sub answers {
  my ($sock, $each) = @_;
  for (;;) {
    my $buf = '';
    defined(recv($sock, $buf, 1 << 20, 0)) or return ($! + 0);
    my $off = 0;
    while ($off + 16 <= length($buf)) {
      my ($len, $type, undef, $mseq) = unpack('LSSL', substr($buf, $off, 16));
      last if $len < 16;
      if ($mseq == $seq) {
        return undef if $type == $NLMSG_DONE;
        if ($type == $NLMSG_ERROR) {
          my $err = unpack('l', substr($buf, $off + 16, 4));
          return $err == 0 ? undef : -$err;
        }
        $each->($type, substr($buf, $off + 16, $len - 16)) if $each;
      }
      $off += ($len + 3) & ~3;
    }
  }
}

sub flush {
  my @addresses = @_;
  my %wanted;
  for my $text (@addresses) {
    my $packed = $text =~ /:/ ? inet_pton($AF_INET6, $text) : inet_pton(AF_INET, $text);
    return "fail not an IP address: $text" unless defined $packed;
    $wanted{$packed} = 1;
  }
  my $sock;
  socket($sock, $AF_NETLINK, $SOCK_RAW, $NETLINK_NETFILTER) or return 'fail cannot open a ctnetlink socket: ' . strerror($! + 0);
  # One dump of every family (nfgen_family 0: the kernel filters nothing), then the deletions.
  my $nfgen = pack('CCn', 0, 0, 0);
  defined(send($sock, header(length($nfgen), $CT_GET, $NLM_F_REQUEST | $NLM_F_DUMP) . $nfgen, 0))
    or return 'fail cannot send the connection tracking dump request: ' . strerror($! + 0);
  my @doomed;
  my $err = answers($sock, sub {
    my ($type, $msg) = @_;
    return unless $type == $CT_NEW && length($msg) >= 4;
    my ($family) = unpack('C', $msg);
    my $a = attrs(substr($msg, 4));
    my $orig = $a->{$CTA_TUPLE_ORIG} or return;
    my ($osrc, $odst) = endpoints($orig->[0]);
    my ($rsrc) = $a->{$CTA_TUPLE_REPLY} ? endpoints($a->{$CTA_TUPLE_REPLY}[0]) : ();
    return unless grep { defined($_) && $wanted{$_} } ($osrc, $odst, $rsrc);
    # Always with the original tuple: a deletion without one would flush the whole table.
    push @doomed, pack('CCn', $family, 0, 0) . padded($orig->[1])
      . ($a->{$CTA_ZONE} ? padded($a->{$CTA_ZONE}[1]) : '') . ($a->{$CTA_ID} ? padded($a->{$CTA_ID}[1]) : '');
  });
  if (defined $err) { close($sock); return 'fail cannot dump the connection tracking table: ' . strerror($err); }
  for my $body (@doomed) {
    unless (defined(send($sock, header(length($body), $CT_DELETE, $NLM_F_REQUEST | $NLM_F_ACK) . $body, 0))) {
      $err = $! + 0;
      close($sock);
      return 'fail cannot send a connection tracking deletion: ' . strerror($err);
    }
    $err = answers($sock);
    next if defined $err && $err == $ENOENT;
    if (defined $err) { close($sock); return 'fail cannot delete a connection tracking entry: ' . strerror($err); }
  }
  close($sock);
  return '';
}

while (my $line = <STDIN>) {
  chomp $line;
  if ($line =~ /^mark (\d+)$/) { print STDERR "done $1\n"; next; }
  my @f = split /\t/, $line, -1;
  if (@f >= 2 && $f[0] eq 'flush') {
    my $failure = flush(@f[1 .. $#f]);
    print STDERR "$failure\n" if $failure ne '';
    next;
  }
  print STDERR "fail unknown request\n";
}
