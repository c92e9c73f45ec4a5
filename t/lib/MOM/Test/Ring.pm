package MOM::Test::Ring;

# The placement of docs/placement.md in pure Perl, for tests that need to
# know which members replicate a name (e.g. a node that does not hold a
# topic). 64-bit arithmetic modulo 2^64 is done on 16-bit limbs so that no
# intermediate value leaves Perl's exact integer range.
#
#   my $p = MOM::Test::Ring::partition_of('news', 64);        # 47
#   my @r = MOM::Test::Ring::replicas([1 .. 5], $p, 3);         # ring order

use strict;
use warnings;
no warnings 'portable';   # 64-bit constants: this suite needs 64-bit perl

my $MASK16 = 0xffff;

sub _mul64 {
    my ($x, $y) = @_;
    my @a = map { ($x >> (16 * $_)) & $MASK16 } 0 .. 3;
    my @b = map { ($y >> (16 * $_)) & $MASK16 } 0 .. 3;
    my @r = (0) x 4;
    for my $i (0 .. 3) {
        for my $j (0 .. 3 - $i) {
            $r[$i + $j] += $a[$i] * $b[$j];
        }
    }
    my $carry = 0;
    my $out = 0;
    for my $k (0 .. 3) {
        my $v = $r[$k] + $carry;
        $out |= ($v & $MASK16) << (16 * $k);
        $carry = int($v / 65536);
    }
    return $out;
}

sub hash64 {
    my ($bytes) = @_;
    my $h = 0xcbf29ce484222325;
    for my $c (unpack 'C*', $bytes) {
        $h = _mul64($h ^ $c, 0x00000100000001b3);
    }
    $h ^= $h >> 33;
    $h = _mul64($h, 0xff51afd7ed558ccd);
    $h ^= $h >> 33;
    $h = _mul64($h, 0xc4ceb9fe1a85ec53);
    $h ^= $h >> 33;
    return $h;
}

sub partition_of {
    my ($name, $partitions) = @_;
    return 0 unless $partitions;
    return hash64($name) % $partitions;
}

# replicas(\@members, p, R [, vnodes]): the first min(R, members) distinct
# members clockwise from the partition's point.
sub replicas {
    my ($members, $p, $r, $vnodes) = @_;
    $vnodes //= 128;
    my %seen;
    my @ids = grep { !$seen{$_}++ } @$members;
    my @points = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1]
                        || $a->[2] <=> $b->[2] }
                 map { my $m = $_; map { [hash64("$m#$_"), $m, $_] }
                                       0 .. $vnodes - 1 } @ids;
    my $want = $r < @ids ? $r : scalar @ids;
    my $key = hash64("partition-$p");
    my $i = 0;
    $i++ while $i < @points && $points[$i][0] < $key;
    my (@out, %in);
    while (@out < $want) {
        my $m = $points[$i % @points][1];
        push @out, $m unless $in{$m}++;
        $i++;
    }
    return @out;
}

1;
