#!/usr/bin/perl
# nodenet's ovs backend: turns off transmit checksum offload on veth ends (the ethtool ioctl ETHTOOL_STXCSUM,
# see src/tx-checksum.ts for why the userspace datapath needs it), as one long-lived process in the node
# namespace instead of a perl per create. A request is one line of tab-separated fields:
#   tx-checksum-off <TAB> NAMESPACE-PATH or - (the node's own) <TAB> IFNAME [<TAB> IFNAME...]
# It enters the namespace with setns(2) just long enough to make a socket there (the ioctl acts in the
# socket's namespace) and comes back. A failure is one stderr line `fail KIND MESSAGE` (KIND: open-namespace,
# ioctl, request); a line `mark N` is answered `done N` on stderr (the session's marker).
# perl-base only (always installed on Debian); names arrive as data, never as code.
use strict;
use warnings;
use Config;
use Socket qw(AF_INET SOCK_DGRAM);

my %SETNS = ('x86_64' => 308, 'aarch64' => 268, 'i386' => 346, 'arm' => 375, 'ppc64le' => 350, 's390x' => 339);
my ($arch) = $Config{archname} =~ /^([a-z0-9_]+)/;
$arch = 'ppc64le' if $arch eq 'powerpc64le';
my $SYS_SETNS = $SETNS{$arch} // die "unsupported architecture $Config{archname}\n";
my $CLONE_NEWNET = 0x40000000;
my ($SIOCETHTOOL, $ETHTOOL_STXCSUM) = (0x8946, 0x17);

open(my $own_ns, '<', '/proc/self/ns/net') or die "cannot open /proc/self/ns/net: $!\n";
$| = 1;
select(STDERR); $| = 1; select(STDOUT);

sub setns_fd { my ($fh) = @_; return syscall($SYS_SETNS, fileno($fh), $CLONE_NEWNET) == 0; }

# `struct ifreq` is 40 bytes: the name (16), then a pointer to the ethtool value (command, data).
sub checksum_off {
  my @names = @_;
  socket(my $s, AF_INET, SOCK_DGRAM, 0) or return ('ioctl', "socket: $!");
  for my $name (@names) {
    my $value = pack('LL', $ETHTOOL_STXCSUM, 0);
    ioctl($s, $SIOCETHTOOL, pack('Z16 P x16', $name, $value)) or return ('ioctl', "$name: $!");
  }
  close($s);
  return ();
}

sub checksum_off_in {
  my ($path, @names) = @_;
  return checksum_off(@names) if $path eq '-';
  open(my $target, '<', $path) or return ('open-namespace', "cannot open $path: $!");
  unless (setns_fd($target)) { my $err = "$!"; close($target); return ('open-namespace', "setting the network namespace \"$path\" failed: $err"); }
  close($target);
  my @failure = checksum_off(@names);
  setns_fd($own_ns) or die "cannot return to the daemon's own network namespace: $!\n";
  return @failure;
}

while (my $line = <STDIN>) {
  chomp $line;
  if ($line =~ /^mark (\d+)$/) { print STDERR "done $1\n"; next; }
  my @f = split /\t/, $line, -1;
  if (@f >= 3 && $f[0] eq 'tx-checksum-off' && $f[1] ne '' && !grep { $_ eq '' || length($_) > 15 } @f[2 .. $#f]) {
    my @failure = checksum_off_in(@f[1 .. $#f]);
    print STDERR "fail $failure[0] $failure[1]\n" if @failure;
    next;
  }
  print STDERR "fail request unknown request\n";
}
