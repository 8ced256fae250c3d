// The lab's sim.js, unchanged except: servers from NATS_URL, an interval and count from the test.
var servers = [process.env.NATS_URL];
var topic = 'trash-level';
var nats = require('nats').connect({'servers':servers});
var left = parseInt(process.env.COUNT || '20');

function trash_level() {
    var lvl = Math.random() * 100;
    var can_id = (Math.random() * 1000).toFixed();
    msg = '{"can_id":"' + can_id + '", "level":"' + lvl + '"}';
    console.log('publishing: ' + msg);
    nats.publish(topic, msg);
    if (--left <= 0) { nats.flush(function() { nats.close(); process.exit(0); }); }
}

nats.on('connect', function() { setInterval(trash_level, parseInt(process.env.INTERVAL || '20')); });
