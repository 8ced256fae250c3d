// The lab's rep.js: prints every report it receives (servers from NATS_URL).
var servers = [process.env.NATS_URL];
var topic = 'trash-level';
var nats = require('nats').connect({'servers':servers});

nats.subscribe(topic, function(msg) {
   console.log('Received report: ' + msg);
});
nats.on('connect', function() { nats.flush(function() { console.log('ready'); }); });
