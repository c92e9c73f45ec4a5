#!/usr/bin/perl

# Every route of the REST contract (/work/shared/api.md, bodies as in
# docs/architecture.md) and every status it can answer, on one real node:
# auth, topics, queues, history, unknown routes (404) and methods (405),
# collection paths with and without the trailing slash, JSON content type
# on every answer.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MOM::Test;

my $t = MOM::Test->new;
our $TODO = $t->todo;
$t->start;

my $JSON_CT = qr{^application/json;\s*charset=utf-8$}i;

# is_json(r, status, name): status, content type, a JSON object body.
sub is_json {
    my ($r, $status, $name) = @_;
    my $ok = is($r->{status}, $status, "$name: status $status");
    like($r->{headers}{'content-type'} // '', $JSON_CT,
         "$name: JSON content type");
    is(ref $r->{json}, 'HASH', "$name: JSON object body")
        or diag("body: " . substr($r->{content} // '', 0, 200));
    return $ok;
}

sub is_error {
    my ($r, $status, $name) = @_;
    is_json($r, $status, $name);
    ok(defined $r->{json} && defined $r->{json}{detail}
       && !ref $r->{json}{detail} && length $r->{json}{detail},
       "$name: {\"detail\": <message>}");
}

# --- auth ----------------------------------------------------------------

my $r = $t->post('/auth/register', {username => 'alice',
                                    password => 'alice-pw-1'});
is_json($r, 200, 'register');
is($r->{json}{message}, 'User registered', 'register message');

$r = $t->post('/auth/register', {username => 'alice',
                                 password => 'other'});
is_error($r, 400, 'register duplicate');
is($r->{json}{detail}, 'User already exists', 'duplicate user detail');

$r = $t->post('/auth/login', {username => 'alice', password => 'alice-pw-1'});
is_json($r, 200, 'login');
my $alice = $r->{json}{token};
like($alice // '', qr/^[\w-]+\.[\w-]+\.[\w-]+$/, 'login gives a JWT');
is($r->{json}{token_type}, 'Bearer', 'token_type Bearer');
is($r->{json}{expires_in}, 1800, 'expires_in: default lifetime 30 min');
my (undef, $claims) = MOM::Test::JWT::jwt_parts($alice // '');
is($claims->{sub}, 'alice', 'token sub is the user');
ok(defined $claims->{exp} && defined $claims->{iat}
   && $claims->{exp} - $claims->{iat} == 1800, 'token iat/exp 30 min apart');
ok(defined $claims->{iat} && abs($claims->{iat} - time) < 60,
   'token iat is now');

$r = $t->post('/auth/login', {username => 'alice', password => 'wrong'});
is_error($r, 401, 'login wrong password');
is($r->{json}{detail}, 'Invalid credentials', 'bad credentials detail');

$r = $t->post('/auth/login', {username => 'nobody', password => 'x'});
is_error($r, 401, 'login unknown user');

my $bob = $t->user_token('bob');
ok($bob, 'second user logged in');

$r = $t->get('/auth/users', token => $alice);
is_json($r, 200, 'list users');
is_deeply($r->{json}{users}, [qw(alice bob)], 'users sorted');
$r = $t->get('/auth/users/', token => $alice);
is_json($r, 200, 'list users, trailing slash');
is_deeply($r->{json}{users}, [qw(alice bob)], 'users, trailing slash');

$r = $t->get('/auth/users');
is_error($r, 401, 'list users without token');
is($r->{json}{detail}, 'Not authenticated', 'no token detail');

# --- topics --------------------------------------------------------------

$r = $t->get('/messages/topics');
is_json($r, 200, 'list topics (no token needed)');
is_deeply($r->{json}{topics}, [], 'no topics yet');

$r = $t->post('/messages/topics', {name => 'news'});
is_error($r, 401, 'create topic without token');

$r = $t->post('/messages/topics', {name => 'news', owner => 'mallory'},
              token => $alice);
is_json($r, 200, 'create topic (owner field ignored)');
is_deeply($r->{json}, {message => 'Topic created', name => 'news'},
          'create topic body');

$r = $t->post('/messages/topics/', {name => 'sports'}, token => $bob);
is_json($r, 200, 'create topic, trailing slash');

$r = $t->post('/messages/topics', {name => 'news'}, token => $bob);
is_error($r, 400, 'create existing topic');
is($r->{json}{detail}, 'Topic already exists', 'existing topic detail');

for my $p ('/messages/topics', '/messages/topics/') {
    $r = $t->get($p);
    is_json($r, 200, "list topics $p");
    is_deeply($r->{json}{topics}, [qw(news sports)], "topics sorted $p");
}

$r = $t->post('/messages/messages/topic/news', {content => 'hello'});
is_error($r, 401, 'publish without token');

$r = $t->post('/messages/messages/topic/news',
              {content => 'hello', sender => 'mallory'}, token => $alice);
is_json($r, 200, 'publish content');
is_deeply($r->{json}, {message => 'Message published', offset => 1},
          'publish body, offset 1');

$r = $t->post('/messages/messages/topic/news',
              {data => {k => [1, 2]}}, token => $bob);
is_json($r, 200, 'publish data');
is($r->{json}{offset}, 2, 'offset 2');

$r = $t->post('/messages/messages/topic/nope', {content => 'x'},
              token => $alice);
is_error($r, 404, 'publish to unknown topic');
is($r->{json}{detail}, 'Topic not found', 'unknown topic detail');

$r = $t->get('/messages/messages/topic/news');
is_json($r, 200, 'history (no token needed)');
my $m = $r->{json}{messages} // [];
is(scalar @$m, 2, 'two messages');
is_deeply([map { $_->{offset} } @$m], [1, 2], 'publish order');
is($m->[0]{sender}, 'alice', 'sender is the token user, not the body');
is($m->[0]{content}, 'hello', 'content');
is_deeply($m->[1]{content}, {k => [1, 2]}, '"data" stored as content');
is($m->[1]{sender}, 'bob', 'second sender');
like($m->[0]{timestamp} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
     'timestamp RFC 3339 UTC with ms');

$r = $t->get('/messages/messages/topic/news',
             headers => {Accept => 'application/json'});
is_json($r, 200, 'history with Accept: application/json');

$r = $t->get('/messages/messages/topic/nope');
is_error($r, 404, 'history of unknown topic');

$r = $t->del('/messages/topics/news');
is_error($r, 401, 'delete topic without token');

$r = $t->del('/messages/topics/news', token => $bob);
is_error($r, 403, 'delete topic of another user');
is($r->{json}{detail}, 'Not the owner of this topic', 'not owner detail');

$r = $t->del('/messages/topics/nope', token => $alice);
is_error($r, 404, 'delete unknown topic');

$r = $t->del('/messages/topics/news', token => $alice);
is_json($r, 200, 'delete topic');
is_deeply($r->{json}, {message => 'Topic deleted', name => 'news'},
          'delete topic body');

$r = $t->get('/messages/messages/topic/news');
is_error($r, 404, 'history of deleted topic');
$r = $t->get('/messages/topics');
is_deeply($r->{json}{topics}, ['sports'], 'deleted topic not listed');

$r = $t->post('/messages/topics', {name => 'news'}, token => $bob);
is_json($r, 200, 're-create topic');
$r = $t->post('/messages/messages/topic/news', {content => 'again'},
              token => $bob);
is($r->{json}{offset}, 1, 're-created topic starts at offset 1');
$r = $t->get('/messages/messages/topic/news');
is(scalar @{$r->{json}{messages} // []}, 1, 'old messages gone');

# --- queues --------------------------------------------------------------

$r = $t->get('/messages/queues');
is_json($r, 200, 'list queues (no token needed)');
is_deeply($r->{json}{queues}, [], 'no queues yet');

$r = $t->post('/messages/queues', {name => 'jobs'});
is_error($r, 401, 'create queue without token');

$r = $t->post('/messages/queues', {name => 'jobs'}, token => $alice);
is_json($r, 200, 'create queue');
is_deeply($r->{json}, {message => 'Queue created', name => 'jobs'},
          'create queue body');
$r = $t->post('/messages/queues/', {name => 'mail'}, token => $bob);
is_json($r, 200, 'create queue, trailing slash');
$r = $t->post('/messages/queues', {name => 'jobs'}, token => $bob);
is_error($r, 400, 'create existing queue');
is($r->{json}{detail}, 'Queue already exists', 'existing queue detail');

for my $p ('/messages/queues', '/messages/queues/') {
    $r = $t->get($p);
    is_json($r, 200, "list queues $p");
    is_deeply($r->{json}{queues}, [qw(jobs mail)], "queues sorted $p");
}

$r = $t->post('/messages/messages/queue/jobs', {content => 'j1'});
is_error($r, 401, 'send without token');
$r = $t->post('/messages/messages/queue/jobs', {content => 'j1'},
              token => $alice);
is_json($r, 200, 'send');
is_deeply($r->{json}, {message => 'Message sent', id => 1}, 'send body');
$r = $t->post('/messages/messages/queue/jobs', {data => [1, 'two']},
              token => $bob);
is($r->{json}{id}, 2, 'send data, id 2');
$r = $t->post('/messages/messages/queue/nope', {content => 'x'},
              token => $bob);
is_error($r, 404, 'send to unknown queue');
is($r->{json}{detail}, 'Queue not found', 'unknown queue detail');

$r = $t->get('/messages/messages/queue/jobs');
is_error($r, 401, 'receive without token');
$r = $t->get('/messages/messages/queue/jobs', token => $bob);
is_json($r, 200, 'receive');
my $msg = $r->{json}{message} // {};
is($msg->{id}, 1, 'first message first');
is($msg->{sender}, 'alice', 'receive sender');
is($msg->{content}, 'j1', 'receive content');
like($msg->{timestamp} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
     'receive timestamp');
$r = $t->get('/messages/messages/queue/jobs', token => $alice);
is($r->{json}{message}{id}, 2, 'second message');
is_deeply($r->{json}{message}{content}, [1, 'two'], '"data" as content');
$r = $t->get('/messages/messages/queue/jobs', token => $alice);
is_json($r, 200, 'receive from empty queue');
ok($r->{json} && exists $r->{json}{message}
   && !defined $r->{json}{message}, 'empty queue: {"message": null}');
$r = $t->get('/messages/messages/queue/nope', token => $alice);
is_error($r, 404, 'receive from unknown queue');

$r = $t->del('/messages/queues/jobs');
is_error($r, 401, 'delete queue without token');
$r = $t->del('/messages/queues/jobs', token => $bob);
is_error($r, 403, 'delete queue of another user');
$r = $t->del('/messages/queues/nope', token => $bob);
is_error($r, 404, 'delete unknown queue');
$r = $t->del('/messages/queues/jobs', token => $alice);
is_json($r, 200, 'delete queue');
is_deeply($r->{json}, {message => 'Queue deleted', name => 'jobs'},
          'delete queue body');
$r = $t->get('/messages/queues');
is_deeply($r->{json}{queues}, ['mail'], 'deleted queue not listed');
$r = $t->get('/messages/messages/queue/jobs', token => $alice);
is_error($r, 404, 'receive from deleted queue');

# --- token in the query string -------------------------------------------

$r = $t->post("/messages/topics?token=$alice", {name => 'viaquery'});
is_json($r, 200, 'token in ?token=');
$r = $t->get("/auth/users?token=$bob");
is_json($r, 200, 'list users with ?token=');
$r = $t->get("/messages/messages/queue/mail?token=$bob");
is_json($r, 200, 'receive with ?token=');

# --- unknown routes and methods ------------------------------------------

for my $p ('/', '/nope', '/auth', '/auth/nope', '/messages',
           '/messages/nope', '/messages/messages', '/messages/messages/topic',
           '/messages/messages/bus/x',
           '/messages/topics/a/b', '/messages/messages/topic/a/b') {
    $r = $t->get($p, token => $alice);
    is_error($r, 404, "GET $p");
}

# A route that exists answers 405 (with Allow) to another method.
for my $c (['PUT', '/messages/topics', 'GET'],
           ['DELETE', '/messages/topics', 'GET'],
           ['PATCH', '/messages/queues', 'POST'],
           ['GET', '/auth/register', 'POST'],
           ['GET', '/auth/login', 'POST'],
           ['POST', '/auth/users', 'GET'],
           ['GET', '/messages/topics/sports', 'DELETE'],
           ['POST', '/messages/queues/mail', 'DELETE'],
           ['PUT', '/messages/messages/topic/sports', 'POST'],
           ['DELETE', '/messages/messages/queue/mail', 'GET']) {
    my ($method, $p, $allowed) = @$c;
    $r = $t->http($method, $p, $method =~ /^P/ ? {} : undef, undef,
                  token => $alice);
    is_error($r, 405, "$method $p");
    like($r->{headers}{allow} // '', qr/\b$allowed\b/,
         "$method $p: Allow lists $allowed");
}

$r = $t->http('HEAD', '/messages/topics');
ok($r->{status} == 200 || $r->{status} == 405, 'HEAD answered');

$t->check_logs;
done_testing;
