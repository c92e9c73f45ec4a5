#!/usr/bin/perl

# Bad input gets a clear JSON error and changes nothing: names (bad
# characters, 129 bytes, empty) -> 422; malformed JSON, non-objects,
# missing fields, wrong types -> 422; bad query parameters -> 422; a body
# over client_max_body_size (1m) -> 413 JSON, plain and chunked.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MOM::Test;

my $t = MOM::Test->new;
our $TODO = $t->todo;
$t->start;

my $tok = $t->user_token('alice');
ok($tok, 'logged in');

sub is_422 {
    my ($r, $name) = @_;
    is($r->{status}, 422, "$name -> 422");
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         "$name: JSON");
    ok($r->{json} && defined $r->{json}{detail} && length $r->{json}{detail},
       "$name: detail") or diag(substr $r->{content} // '', 0, 200);
}

# --- names ---------------------------------------------------------------

my $n128 = 'a' x 128;
my $n129 = 'b' x 129;
my @bad_names = ('', 'with space', 'slash/x', 'semi;colon', "new\nline",
                 "tab\tx", "caf\x{e9}", 'quote"x', 'star*', 'at@x',
                 'plus+x', $n129, '%2e');

for my $coll (qw(topics queues)) {
    for my $name (@bad_names) {
        my $label = "$coll: create name " . MOM::Test::JSON()->encode($name);
        is_422($t->post("/messages/$coll", {name => $name}, token => $tok),
               substr $label, 0, 60);
    }
    my $r = $t->post("/messages/$coll", {name => $n128}, token => $tok);
    is($r->{status}, 200, "$coll: 128-byte name accepted");
    $r = $t->post("/messages/$coll", {name => 'A-z_0.9'}, token => $tok);
    is($r->{status}, 200, "$coll: all allowed characters");
    $r = $t->get("/messages/$coll");
    is_deeply([sort @{$r->{json}{$coll} // []}], [sort 'A-z_0.9', $n128],
              "$coll: nothing else was created");
}

# Names in paths.
my %path_bad = ('with%20space' => 'encoded space', 'caf%C3%A9' => 'UTF-8',
                "$n129" => '129 bytes',  'semi%3Bcolon' => 'encoded ;');
for my $p (sort keys %path_bad) {
    is_422($t->post("/messages/messages/topic/$p", {content => 1},
                    token => $tok), "publish to $path_bad{$p} name");
    is_422($t->get("/messages/messages/topic/$p"),
           "history of $path_bad{$p} name");
    is_422($t->del("/messages/topics/$p", token => $tok),
           "delete topic $path_bad{$p}");
    is_422($t->post("/messages/messages/queue/$p", {content => 1},
                    token => $tok), "send to $path_bad{$p} name");
    is_422($t->get("/messages/messages/queue/$p", token => $tok),
           "receive from $path_bad{$p} name");
    is_422($t->del("/messages/queues/$p", token => $tok),
           "delete queue $path_bad{$p}");
}
my $r = $t->post("/messages/messages/topic/$n128", {content => 1},
                 token => $tok);
is($r->{status}, 200, 'publish to the 128-byte topic');

# Usernames.
for my $name (@bad_names) {
    is_422($t->post('/auth/register', {username => $name, password => 'pw'}),
           'register username ' . substr(MOM::Test::JSON()->encode($name),
                                          0, 30));
}
is($t->post('/auth/register', {username => $n128, password => 'pw'})
     ->{status}, 200, '128-byte username accepted');

# Passwords: a string of 1..1024 bytes.
is_422($t->post('/auth/register', {username => 'p1', password => ''}),
       'empty password');
is_422($t->post('/auth/register', {username => 'p2',
                                   password => 'x' x 1025}),
       '1025-byte password');
is($t->post('/auth/register', {username => 'p3', password => 'x' x 1024})
     ->{status}, 200, '1024-byte password accepted');
is_422($t->post('/auth/login', {username => 'p3', password => 123}),
       'login with a numeric password');

# --- bodies --------------------------------------------------------------

my %bodies = (
    'malformed JSON'      => '{"name": ',
    'trailing garbage'    => '{"name": "x"} x',
    'not JSON at all'     => 'name=x',
    'empty body'          => '',
    'a JSON array'        => '["x"]',
    'a JSON string'       => '"x"',
    'a JSON number'       => '42',
    'JSON null'           => 'null',
    'missing field'       => '{}',
    'other field only'    => '{"title": "x"}',
    'name is a number'    => '{"name": 5}',
    'name is null'        => '{"name": null}',
    'name is an object'   => '{"name": {"a": 1}}',
    'name is an array'    => '{"name": ["x"]}',
    'name is true'        => '{"name": true}',
    'invalid UTF-8'       => qq({"name": "a\xff"}),
);
for my $what (sort keys %bodies) {
    is_422($t->post('/messages/topics', $bodies{$what}, token => $tok),
           "create topic: $what");
    is_422($t->post('/messages/queues', $bodies{$what}, token => $tok),
           "create queue: $what");
}

my %auth_bodies = (
    'malformed JSON'      => '{"username": "u", ',
    'array'               => '[]',
    'missing password'    => '{"username": "u"}',
    'missing username'    => '{"password": "p"}',
    'username a number'   => '{"username": 1, "password": "p"}',
    'password an object'  => '{"username": "u", "password": {}}',
    'password null'       => '{"username": "u", "password": null}',
);
for my $what (sort keys %auth_bodies) {
    is_422($t->post('/auth/register', $auth_bodies{$what}),
           "register: $what");
    is_422($t->post('/auth/login', $auth_bodies{$what}), "login: $what");
}
$r = $t->get('/auth/users', token => $tok);
is_deeply([sort @{$r->{json}{users} // []}],
          [sort 'alice', $n128, 'p3'], 'no user created by bad bodies');

$t->post('/messages/topics', {name => 'ok'}, token => $tok);
$t->post('/messages/queues', {name => 'okq'}, token => $tok);
for my $what ('{}', '{"sender": "x"}', '[1]', '{"content": ',
              'content=1', '') {
    is_422($t->post('/messages/messages/topic/ok', $what, token => $tok),
           "publish body $what");
    is_422($t->post('/messages/messages/queue/okq', $what, token => $tok),
           "send body $what");
}
$r = $t->get('/messages/messages/topic/ok');
is_deeply($r->{json}{messages}, [], 'nothing published by bad bodies');

# Any JSON value is content, including false, 0 and "".
for my $c ('false', '0', '""', '[]', '{}', '"multi\nline"', '"\u00e9\u2713"') {
    $r = $t->post('/messages/messages/topic/ok', qq({"content": $c}),
                  token => $tok);
    is($r->{status}, 200, "content $c accepted");
}
$r = $t->get('/messages/messages/topic/ok');
is_deeply([map { $_->{content} } @{$r->{json}{messages} // []}],
          [JSON::PP::false(), 0, '', [], {}, "multi\nline",
           "\x{e9}\x{2713}"], 'contents round-trip as JSON values');

# --- query parameters ----------------------------------------------------

for my $q ('since=abc', 'since=1.5', 'since=-1', 'limit=abc', 'limit=-5',
           'limit=1e3', 'since=99999999999999999999999') {
    is_422($t->get("/messages/messages/topic/ok?$q"), "history ?$q");
}

# --- body size -----------------------------------------------------------

my $big = '{"content": "' . ('x' x (1024 * 1024 + 10)) . '"}';
for my $path ('/messages/messages/topic/ok', '/auth/register') {
    my $req = "POST $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $tok\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($big) . "\r\nConnection: close\r\n\r\n"
        . $big;
    $r = $t->raw($req, timeout => 10);
    is($r->{status}, 413, "$path: body over 1m -> 413");
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         "$path: 413 is JSON");
    ok($r->{json} && $r->{json}{detail}, "$path: 413 detail")
        or diag(substr $r->{content} // '', 0, 200);
}

# Chunked: the size is only known while reading.
my $chunks = '';
my $sent = 0;
while ($sent < 1024 * 1024 + 100) {
    my $piece = $sent == 0 ? '{"content": "' : 'y' x 65536;
    $chunks .= sprintf("%x\r\n%s\r\n", length $piece, $piece);
    $sent += length $piece;
}
$chunks .= sprintf("%x\r\n%s\r\n", 2, '"}') . "0\r\n\r\n";
$r = $t->raw("POST /messages/messages/topic/ok HTTP/1.1\r\nHost: x\r\n"
             . "Authorization: Bearer $tok\r\n"
             . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
             . $chunks, timeout => 10);
is($r->{status}, 413, 'chunked body over 1m -> 413');
ok($r->{json} && $r->{json}{detail}, 'chunked 413 is JSON');

# Just under the limit is fine.
my $fits = '{"content": "' . ('z' x (1024 * 1024 - 100)) . '"}';
$r = $t->post('/messages/messages/topic/ok', $fits, token => $tok);
is($r->{status}, 200, 'body just under 1m accepted');
$r = $t->get('/messages/messages/topic/ok?since=7');
is(length($r->{json}{messages}[0]{content} // ''), 1024 * 1024 - 100,
   'large content stored whole');

# --- still healthy -------------------------------------------------------

$r = $t->get('/messages/topics');
is($r->{status}, 200, 'node still answers');

$t->check_logs;
done_testing;
