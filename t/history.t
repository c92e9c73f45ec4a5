#!/usr/bin/perl

# Topic history: ?since=N returns offsets > N, ?limit=n caps the count with
# the documented default (100) and maximum (1000, larger values clamped);
# paging with since reads everything once; timestamps are RFC 3339 UTC
# with milliseconds, close to the real time, non-decreasing with offsets.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use MOM::Test;

my $DEFAULT = 100;
my $MAX = 1000;
my $TOTAL = 1010;

# synchronous=normal: a faster fill; durability is persistence.t's job.
my $t = MOM::Test->new(synchronous => 'normal');
our $TODO = $t->todo;
$t->start;

my $tok = $t->user_token('alice');
ok($tok, 'logged in');
is($t->post('/messages/topics', {name => 'h'}, token => $tok)->{status}, 200,
   'topic created');

my $r = $t->get('/messages/messages/topic/h');
is($r->{content}, '{"messages":[]}', 'empty history: {"messages":[]}');

my $t_start = time;
my $ok = 1;
for my $i (1 .. $TOTAL) {
    $r = $t->post('/messages/messages/topic/h', {content => {i => $i}},
                  token => $tok);
    $ok = 0, last unless $r->{status} == 200 && $r->{json}{offset} == $i;
}
my $t_end = time;
ok($ok, "published $TOTAL messages, offsets 1..$TOTAL")
    or diag("stopped at status $r->{status}: $r->{content}");

sub offsets {
    my ($q) = @_;
    my $r = $t->get("/messages/messages/topic/h$q");
    return undef unless $r->{status} == 200;
    return [map { $_->{offset} } @{$r->{json}{messages} // []}];
}

is_deeply(offsets(''), [1 .. $DEFAULT], "default: first $DEFAULT");
is_deeply(offsets('?since=0'), [1 .. $DEFAULT], 'since=0 same as default');
is_deeply(offsets('?since=5'), [6 .. 5 + $DEFAULT], 'since=5');
is_deeply(offsets('?limit=3'), [1 .. 3], 'limit=3');
is_deeply(offsets('?since=1000&limit=3'), [1001 .. 1003], 'since + limit');
is_deeply(offsets('?limit=3&since=1000'), [1001 .. 1003],
          'parameter order does not matter');
is_deeply(offsets("?since=$TOTAL"), [], 'since = last: empty');
is_deeply(offsets('?since=999999'), [], 'since past the end: empty');
is_deeply(offsets('?since=1005&limit=100'), [1006 .. $TOTAL],
          'limit larger than what is left');
is_deeply(offsets("?limit=$MAX"), [1 .. $MAX], "limit=$MAX (the maximum)");
is_deeply(offsets('?limit=5000'), [1 .. $MAX], "limit=5000 clamped to $MAX");
is_deeply(offsets('?limit=1'), [1], 'limit=1');
is_deeply(offsets('?since=3&unknown=x'), [4 .. 3 + $DEFAULT],
          'unknown parameters ignored');

# Paging with since reads everything once, in order.
my @all;
my $since = 0;
for (1 .. 50) {
    my $page = offsets("?since=$since&limit=250") or last;
    last unless @$page;
    push @all, @$page;
    $since = $page->[-1];
}
is_deeply(\@all, [1 .. $TOTAL], 'paging with since: every offset once');

# Message bodies and timestamps.
$r = $t->get("/messages/messages/topic/h?limit=$MAX");
my @m = @{$r->{json}{messages} // []};
is_deeply([map { $_->{content}{i} } @m[0 .. 9]], [1 .. 10],
          'contents in publish order');
is_deeply([sort keys %{$m[0] // {}}], [qw(content offset sender timestamp)],
          'message fields');
my ($fmt_ok, $mono, $in_window) = (1, 1, 1);
my $prev = 0;
for my $msg (@m) {
    my $ts = $msg->{timestamp} // '';
    unless ($ts =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z$/) {
        $fmt_ok = 0;
        diag("bad timestamp '$ts'");
        last;
    }
    my $epoch = timegm($6, $5, $4, $3, $2 - 1, $1) + $7 / 1000;
    $mono = 0 if $epoch < $prev;
    $prev = $epoch;
    $in_window = 0 if $epoch < $t_start - 1 || $epoch > $t_end + 1;
}
ok($fmt_ok, 'timestamps: YYYY-MM-DDTHH:MM:SS.mmmZ');
ok($mono, 'timestamps non-decreasing with offsets');
ok($in_window, 'timestamps within the publishing window (UTC)')
    or diag("window " . strftime('%FT%TZ', gmtime $t_start) . " .. "
            . strftime('%FT%TZ', gmtime $t_end));
my %ms = map { substr($_->{timestamp} // '', 20, 3) => 1 } @m;
cmp_ok(scalar keys %ms, '>', 1, 'milliseconds are real, not always .000');

# The history route answers JSON for Accept: application/json and */*.
for my $accept ('application/json', '*/*', 'text/html') {
    $r = $t->get('/messages/messages/topic/h?limit=1',
                 headers => {Accept => $accept});
    is($r->{status}, 200, "Accept: $accept -> 200 JSON history");
    is(scalar @{$r->{json}{messages} // []}, 1, "Accept: $accept -> 1 msg");
}

$t->check_logs;
done_testing;
