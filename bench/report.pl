#!/usr/bin/perl
# report.pl: turns scripts/bench's raw results (one line per run:
# bench<TAB>system<TAB>round<TAB>json) into the markdown results table.
# Per system the median over rounds is shown; a ratio is the median over
# rounds of (MOM / baseline) of the same round, so that drift of the shared
# machine between rounds cancels out.
#
#   perl bench/report.pl results.tsv key=value...

use strict;
use warnings;
use JSON::PP;

my ($file, @kv) = @ARGV;
my %meta = map { split /=/, $_, 2 } @kv;
my %runs;        # $runs{bench}{system}{round} = decoded json
my %failures;    # "system, bench: error" => count, listed at the end

open my $fh, '<', $file or die "$file: $!";
while (my $line = <$fh>) {
    chomp $line;
    my ($bench, $sys, $round, $json) = split /\t/, $line, 4;
    next unless defined $json;
    my $d = eval { decode_json($json) } // { failed => 1 };
    $runs{$bench}{$sys}{$round} = $d;
}

my %label = (
    plain => 'nginx `return 200`',
    nchan => 'nchan (in-memory)',
    mom   => "MOM ($meta{nodes} node" . ($meta{nodes} > 1 ? 's' : '') . ')',
);

sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef unless @v;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub num {
    my ($v, $dec) = @_;
    return 'n/a' unless defined $v;
    $dec //= 0;
    my $s = sprintf "%.${dec}f", $v;
    1 while $s =~ s/^(-?\d+)(\d{3})/$1,$2/;
    return $s;
}

sub ms { defined $_[0] && $_[0] >= 0 ? sprintf('%.2f', $_[0]) : 'n/a' }

sub ratio { defined $_[0] ? sprintf('x%.2f', $_[0]) : '' }

# per-round metric of one system: { round => value }
sub per_round {
    my ($bench, $sys, $f) = @_;
    my $r = $runs{$bench}{$sys} or return {};
    my %out;
    for my $round (keys %$r) {
        next if $r->{$round}{failed};
        my $v = $f->($r->{$round});
        $out{$round} = $v if defined $v;
    }
    return \%out;
}

sub med_of {
    my ($bench, $sys, $f) = @_;
    return median(values %{ per_round($bench, $sys, $f) });
}

# median over rounds of a/b, rounds where both ran
sub ratio_of {
    my ($bench, $sys, $base, $f) = @_;
    my $a = per_round($bench, $sys, $f);
    my $b = per_round($bench, $base, $f);
    return median(map { $a->{$_} / $b->{$_} }
                  grep { exists $b->{$_} && $b->{$_} > 0 } keys %$a);
}

sub sum_of {
    my ($bench, $sys, $f) = @_;
    my $t = 0;
    $t += $_ for values %{ per_round($bench, $sys, $f) };
    return $t;
}

sub failed_rounds {
    my ($bench, $sys) = @_;
    my $r = $runs{$bench}{$sys} or return 0;
    my @f = grep { $_->{failed} } values %$r;
    $failures{"$label{$sys}, $bench: $_->{error}"}++
        for grep { $_->{error} } @f;
    return scalar @f;
}

sub have { my ($bench) = @_; return exists $runs{$bench} }

# a run of this benchmark that did not fail (for its parameters)
sub sample_run {
    my ($bench) = @_;
    for my $sys (qw(nchan plain mom)) {
        for my $d (values %{ $runs{$bench}{$sys} // {} }) {
            return $d unless $d->{failed};
        }
    }
    return {};
}

sub systems_of {
    my ($bench) = @_;
    return grep { exists $runs{$bench}{$_} } qw(plain nchan mom);
}

sub sh {
    my $v = `$_[0] 2>/dev/null` // '';
    chomp $v;
    return $v eq '' ? '?' : $v;
}

# --- header -----------------------------------------------------------------

my $model = sh(q{sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1});
my $mem = sh(q{awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo});
my $nginx = sh(q{/usr/sbin/nginx -v 2>&1 | sed 's|.*nginx/||'});
my $nchan = sh(q{dpkg-query -W -f='${Version}' libnginx-mod-nchan});
my $wrk = sh(q{dpkg-query -W -f='${Version}' wrk});

print "## Results\n\n";
print "- Command: `$meta{cmd}`\n";
print "- Date: $meta{date}\n";
print "- Machine: `nproc` = ", sh('nproc'), ", $model, $mem, Linux ",
    sh('uname -r'), "\n";
print "- Software: nginx $nginx, nchan $nchan, wrk $wrk; MOM commit ",
    "$meta{commit}, $meta{nodes} node(s), momd `synchronous = full`, ",
    "nginx `worker_processes $meta{workers}` for each baseline, ",
    "$meta{node_workers} for each MOM node\n";
print "- Rounds: $meta{rounds} interleaved rounds of $meta{duration} s ",
    "(wrk), $meta{sse_rounds} for SSE; figures are medians over rounds, ",
    "ratios are medians of per-round ratios\n";
print "- MOM not measured: $meta{mom_why}\n" unless $meta{mom_ok};
print "\n";

# --- publish ----------------------------------------------------------------

my $good_rps = sub {
    my $d = shift;
    return undef unless $d->{duration_s};
    return ($d->{requests} - $d->{status_errors}) / $d->{duration_s};
};

if (have('publish-1') || have('publish-1000')) {
    print "### Publish: 100-byte messages, wrk, $meta{connections} ",
        "connections, Bearer token\n\n";
    print "| topics | system | msgs/s | p50 ms | p99 ms | errors ",
        "| vs `return 200` | vs nchan |\n";
    print "|---|---|---:|---:|---:|---:|---:|---:|\n";
    for my $t (1, 1000) {
        my $b = "publish-$t";
        next unless have($b);
        for my $sys (systems_of($b)) {
            my $errs = sum_of($b, $sys,
                sub { $_[0]{socket_errors} + $_[0]{status_errors} });
            my $fail = failed_rounds($b, $sys);
            printf "| %s | %s | %s | %s | %s | %s%s | %s | %s |\n",
                num($t), $label{$sys},
                num(med_of($b, $sys, $good_rps)),
                ms(med_of($b, $sys, sub { $_[0]{p50_ms} })),
                ms(med_of($b, $sys, sub { $_[0]{p99_ms} })),
                num($errs), $fail ? " ($fail runs failed)" : '',
                $sys eq 'plain' ? '' : ratio(ratio_of($b, $sys, 'plain',
                                                      $good_rps)),
                $sys eq 'mom' ? ratio(ratio_of($b, $sys, 'nchan', $good_rps))
                              : '';
        }
    }
    print "\n";
}

# --- queue ------------------------------------------------------------------

if (have('queue')) {
    print "### Queue: send/receive pairs, $meta{queue_n} producers + ",
        "$meta{queue_n} consumers\n\n";
    print "| system | pairs/s | send p50 / p99 ms | receive p50 / p99 ms ",
        "| empty receives/s | errors | vs `return 200` |\n";
    print "|---|---:|---:|---:|---:|---:|---:|\n";
    my $pairs = sub {
        my $d = shift;
        my ($p, $c) = @{$d}{qw(producer consumer)};
        return undef if !$p->{duration_s} || !$c->{duration_s};
        my $sent = $good_rps->($p);
        return $c->{got_per_s} < $sent ? $c->{got_per_s} : $sent;
    };
    for my $sys (systems_of('queue')) {
        my $q = 'queue';
        printf "| %s | %s | %s / %s | %s / %s | %s | %s | %s |\n",
            $label{$sys}, num(med_of($q, $sys, $pairs)),
            ms(med_of($q, $sys, sub { $_[0]{producer}{p50_ms} })),
            ms(med_of($q, $sys, sub { $_[0]{producer}{p99_ms} })),
            ms(med_of($q, $sys, sub { $_[0]{consumer}{p50_ms} })),
            ms(med_of($q, $sys, sub { $_[0]{consumer}{p99_ms} })),
            num(med_of($q, $sys, sub {
                $_[0]{consumer}{duration_s}
                    ? $_[0]{consumer}{empty} / $_[0]{consumer}{duration_s}
                    : undef })),
            num(sum_of($q, $sys, sub {
                my $e = 0;
                $e += ($_->{socket_errors} // 0) + ($_->{status_errors} // 0)
                    for @{ $_[0] }{qw(producer consumer)};
                $e })),
            $sys eq 'plain' ? '' : ratio(ratio_of($q, $sys, 'plain', $pairs));
    }
    print "\n";
}

# --- SSE fan-out ------------------------------------------------------------

my @sse = sort { (split /-/, $a)[1] <=> (split /-/, $b)[1] || $b cmp $a }
          grep { /^sse-/ } keys %runs;
if (@sse) {
    print "### SSE fan-out: one topic, S subscribers, publish-to-receive ",
        "latency ($meta{sse_publishers} publisher connections)\n\n";
    print "| subscribers | publishing | system | published msgs/s ",
        "| delivered events/s | latency p50 ms | p99 ms ",
        "| first p50 ms | spread p50 ms | misses | dups ",
        "| reconnects | vs nchan (delivered/s) | vs nchan (p99) |\n";
    print "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "---:|---:|\n";
    for my $b (@sse) {
        my (undef, $s, $mode) = split /-/, $b;
        for my $sys (systems_of($b)) {
            my $any = sample_run($b);
            my $how = $mode eq 'rate'
                ? num($any->{rate}) . " msg/s x " . num($any->{messages})
                : "full speed x " . num($any->{messages});
            my $fail = failed_rounds($b, $sys);
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s "
                . "| %s | %s | %s |\n",
                num($s), $how, $label{$sys} . ($fail ? " ($fail failed)" : ''),
                num(med_of($b, $sys, sub { $_[0]{pub_per_s} })),
                num(med_of($b, $sys, sub { $_[0]{delivered_per_s} })),
                ms(med_of($b, $sys, sub { $_[0]{lat_p50_ms} })),
                ms(med_of($b, $sys, sub { $_[0]{lat_p99_ms} })),
                ms(med_of($b, $sys, sub { $_[0]{first_p50_ms} })),
                ms(med_of($b, $sys, sub { $_[0]{spread_p50_ms} })),
                num(sum_of($b, $sys, sub { $_[0]{misses} })),
                num(sum_of($b, $sys, sub { $_[0]{dups} })),
                num(sum_of($b, $sys, sub { $_[0]{reconnects} })),
                $sys eq 'mom' ? ratio(ratio_of($b, $sys, 'nchan',
                                      sub { $_[0]{delivered_per_s} })) : '',
                $sys eq 'mom' ? ratio(ratio_of($b, $sys, 'nchan',
                                      sub { $_[0]{lat_p99_ms} })) : '';
        }
    }
    print "\n";
}

# --- late joiners -----------------------------------------------------------

if (have('late')) {
    print "### Late joiners: rejoin with Last-Event-ID during full-speed ",
        "publishing\n\n";
    print "| system | subscribers | messages | rejoins | expected deliveries ",
        "| misses | dups |\n";
    print "|---|---:|---:|---:|---:|---:|---:|\n";
    for my $sys (systems_of('late')) {
        my $any = sample_run('late');
        my $fail = failed_rounds('late', $sys);
        printf "| %s | %s | %s | %s | %s | %s | %s |\n",
            $label{$sys} . ($fail ? " ($fail failed)" : ''),
            num($any->{subs}), num(sum_of('late', $sys,
                                          sub { $_[0]{messages} })),
            num(sum_of('late', $sys, sub { $_[0]{rejoins} })),
            num(sum_of('late', $sys, sub { $_[0]{expected} })),
            num(sum_of('late', $sys, sub { $_[0]{misses} })),
            num(sum_of('late', $sys, sub { $_[0]{dups} }));
    }
    print "\n";
}

# --- memory soak ------------------------------------------------------------

if (have('soak')) {
    my $d = $runs{soak}{mom}{1};
    print "### Memory soak: momd RSS under publish + subscribe\n\n";
    if ($d->{failed}) {
        print "failed\n\n";
    } else {
        my ($w, $e) = @{$d}{qw(wrk sse)};
        printf "Load: wrk publishing to 1,000 topics (10 connections): %s ",
            num($good_rps->($w) // 0);
        if ($e->{failed}) {
            printf "msgs/s; the 100 SSE subscribers failed: %s.\n\n",
                $e->{error} // 'see the log';
        } else {
            printf "msgs/s; 100 SSE subscribers on one topic at %s msg/s: ",
                num($e->{rate});
            printf "%s events/s delivered, %s misses (%s publishes not"
                . " acknowledged, owed by no one).\n\n",
                num($e->{delivered_per_s}), num($e->{misses}),
                num($e->{pub_errors} // 0);
        }
        print "| node | seconds | samples | RSS first MiB | last MiB ",
            "| max MiB |\n|---:|---:|---:|---:|---:|---:|\n";
        for my $n (@{ $d->{nodes} }) {
            printf "| %d | %d | %d | %.1f | %.1f | %.1f |\n", $n->{node},
                $n->{seconds}, $n->{samples}, $n->{first_kb} / 1024,
                $n->{last_kb} / 1024, $n->{max_kb} / 1024;
        }
        print "\n";
    }
}

if (%failures) {
    print "### Failed runs\n\n";
    print "- $_ (x$failures{$_})\n" for sort keys %failures;
    print "\n";
}
