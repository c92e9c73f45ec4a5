#!/usr/bin/perl

# The browser example (examples/sse.html) in headless Chromium, driven over
# WebDriver: the page is served by the node's nginx at /examples/, logs in
# through its form (POST /auth/login), subscribes with EventSource and
# ?token=, shows messages published by another client as they arrive (and
# a second one live), publishes through its own form, and shows the final
# `end` event's reason when the topic is deleted.
#
# Without chromium and chromium-driver the test is skipped, except under
# CI=true, where scripts/install-deps has installed them: there it fails.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use MOM::Test;
use MOM::Test::WebDriver;

if (!MOM::Test::WebDriver::available()) {
    my $why = 'chromium and chromium-driver are not installed'
              . ' (scripts/install-deps installs them)';
    if (($ENV{CI} // '') eq 'true') {
        fail($why);
        done_testing();
        exit 1;
    }
    plan skip_all => $why;
}

my $t = MOM::Test->new;
$t->start;
ok($t->ok, 'node up') or BAIL_OUT('the node did not start');

my $pw = $t->password_for('alice');
my $tok = $t->user_token('alice');
ok($tok, 'alice registered');
is($t->post('/messages/topics', {name => 'web'}, token => $tok)->{status},
   200, 'topic web created');

my $page = 'http://127.0.0.1:' . $t->port . '/examples/sse.html';
my $r = $t->get('/examples/sse.html');
is($r->{status}, 200, 'nginx serves /examples/sse.html');
like($r->{headers}{'content-type'} // '', qr{^text/html}, 'as text/html');
unlike($r->{content} // '', qr{(?:src|href)\s*=\s*["']?(?:https?:)?//}i,
       'the page loads nothing from elsewhere');

my $t0 = time;
my $b = MOM::Test::WebDriver->new(dir => $t->dir);
ok($b, 'chromedriver and headless Chromium started')
    or BAIL_OUT("no browser: $@");
note(sprintf 'Chromium %s up in %.1f s', $b->browser_version // '?',
     time - $t0);

$b->get($page);
is($b->script('return document.title'), 'MOM: topic stream', 'page loaded');

# --- log in through the form ------------------------------------------------

$b->type('#username', 'alice');
$b->type('#password', 'wrong password');
$b->click('#login');
like($b->wait_for(q{var s = document.getElementById('login-status')
                    .textContent; return /failed/.test(s) && s;}, 5) // '',
     qr/login failed: 401/, 'a bad password shows the 401');

$b->type('#password', $pw);
$b->click('#login');
ok($b->wait_for(q{return /^logged in as alice/.test(
                    document.getElementById('login-status').textContent);},
                5), 'logged in through the form');

# --- subscribe, then messages from another client arrive ----------------

$b->type('#topic', 'web');
$b->click('#subscribe');
is($b->wait_for(q{var s = document.getElementById('state').textContent;
                  return s === 'open' && s;}, 5), 'open',
   'EventSource open');

my $rows_js = q{
    return Array.prototype.map.call(
        document.querySelectorAll('#messages tr.msg'), function (tr) {
            var c = function (k) {
                return tr.querySelector('td.' + k).textContent;
            };
            return {id: tr.dataset.offset, offset: c('offset'),
                    sender: c('sender'), content: c('content'),
                    timestamp: c('timestamp')};
        });
};
my $wait_rows_js = "var rows = (function () { $rows_js })();"
                   . ' return rows.length >= arguments[0] && rows;';

sub publish {
    my ($content) = @_;
    my $r = $t->post('/messages/messages/topic/web', {content => $content},
                     token => $tok);
    return $r->{status} == 200 ? $r->{json}{offset} : undef;
}

my $p0 = time;
is(publish({text => 'hello from perl', n => 1}), 1, 'published offset 1');
my $rows = $b->wait_for($wait_rows_js, 5, 1);
my $lat1 = time - $p0;
ok($rows, sprintf 'message 1 in the DOM (%.0f ms)', $lat1 * 1000);
my $row = $rows ? $rows->[0] : {};
is($row->{id}, '1', 'row: offset from the event id');
is($row->{offset}, '1', 'row: offset');
is($row->{sender}, 'alice', 'row: sender');
is_deeply(eval { $t->JSON->decode($row->{content}) },
          {text => 'hello from perl', n => 1}, 'row: content (JSON shown)');
like($row->{timestamp} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
     'row: RFC 3339 timestamp');

sleep 0.5;
$p0 = time;
is(publish("second \x{2713}"), 2, 'published offset 2');
$rows = $b->wait_for($wait_rows_js, 5, 2);
my $lat2 = time - $p0;
ok($rows, sprintf 'message 2 arrives live (%.0f ms)', $lat2 * 1000);
is($rows && $rows->[1]{content}, "second \x{2713}",
   'string content shown as text (UTF-8)');
cmp_ok($lat2, '<', 2, 'live delivery within 2 s');
is($rows && scalar @$rows, 2, 'no duplicate rows');

# --- publish through the page ---------------------------------------------

$b->type('#content', '{"from": "browser"}');
$b->click('#publish');
like($b->wait_for(q{var s = document.getElementById('publish-status')
                    .textContent; return /offset/.test(s) && s;}, 5) // '',
     qr/published at offset 3/, 'the page published offset 3');
$rows = $b->wait_for($wait_rows_js, 5, 3);
is($rows && $rows->[2]{content}, '{"from":"browser"}',
   'and its own stream shows it');
my $h = $t->get('/messages/messages/topic/web?since=2')->{json};
is_deeply($h && $h->{messages}[0] && [@{$h->{messages}[0]}{qw(sender content)}],
          ['alice', {from => 'browser'}], 'history has it, sender alice');

# --- resume: the whole topic from last_event_id=0 -------------------------

$b->get("$page?topic=web&last_event_id=0");
$b->type('#username', 'alice');
$b->type('#password', $pw);
$b->click('#login');
$b->wait_for(q{return /^logged in/.test(
                 document.getElementById('login-status').textContent);}, 5);
$b->click('#subscribe');
$rows = $b->wait_for($wait_rows_js, 5, 3);
is_deeply([map { $_->{id} } @{$rows // []}], [1, 2, 3],
          'last_event_id=0 (from the page URL) replays the whole topic');

# --- the final event -------------------------------------------------------

is($t->del('/messages/topics/web', token => $tok)->{status}, 200,
   'topic deleted');
is($b->wait_for(q{var s = document.getElementById('end-reason').textContent;
                  return s;}, 5), 'topic deleted',
   'the page shows the end event: topic deleted');
is($b->wait_for(q{var s = document.getElementById('state').textContent;
                  return s === 'ended' && s;}, 5), 'ended',
   'and closed its EventSource');

# --- the browser goes away cleanly ---------------------------------------

my @pids = $b->pids;
ok(scalar @pids, 'Chromium processes known: ' . scalar @pids);
$b->quit;
is(join(' ', $b->left_behind), '', 'chromium and chromedriver stopped');

$t->check_logs;
done_testing();
