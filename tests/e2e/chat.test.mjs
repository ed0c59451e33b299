// Browser end-to-end: two users in two Chromium contexts against the real server binary.
// login (OTP from the server log) -> profile -> contacts -> chat both ways with receipts, typing
// and unread badges -> history paging -> reload keeps history -> messages typed while the server
// is down are delivered after it restarts.
// Run: node --test tests/e2e/   (needs the binary: see support/harness.mjs for MESCON_BIN)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MesconServer, launchBrowser, newUserPage, uiLogin, tid, eventually, makePng, shot, DESKTOP } from './support/harness.mjs';

const ALICE = '+15550100001';
const BOB = '+15550100002';
const CAROL = '+15550100003';

let server, browser, alice, bob, aliceId, bobId;

before(async () => {
  server = await MesconServer.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

const messages = (page) => page.locator(tid('message'));
const lastMessage = (page) => messages(page).last();

test('login with OTP, including a wrong code and the resend countdown', async () => {
  alice = await newUserPage(browser, server, DESKTOP);
  await alice.locator(tid('login-phone')).fill(ALICE);
  const from = server.lines.length;
  await alice.locator(tid('login-send')).click();
  const code = await server.otp(ALICE, from);
  // The resend link counts down from resend_after before it can be used.
  await assertText(alice.locator(tid('login-resend')), /Resend code in 0:\d\d/);
  assert.equal(await alice.locator(tid('login-resend')).isDisabled(), true);
  const wrong = code === '000000' ? '111111' : '000000';
  await alice.locator(tid('login-code')).fill(wrong);
  await alice.locator(tid('login-verify')).click();
  await assertText(alice.locator(tid('login-error')), /not right/i);
  await alice.locator(tid('login-code')).fill(code);
  await alice.locator(tid('login-verify')).click();
  await alice.locator(tid('nav-chats')).waitFor();
  assert.deepEqual(alice.problems, []);

  bob = await newUserPage(browser, server, DESKTOP);
  await uiLogin(bob, server, BOB);
});

test('profile: display name and picture', async () => {
  await alice.locator(tid('nav-profile')).click();
  await alice.locator(tid('profile-name')).fill('Alice Liddell');
  await alice.locator(tid('profile-save')).click();
  await alice.locator(tid('profile-avatar-input')).setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: makePng() });
  // After the upload the header avatar shows the server's picture (an <img>), not initials.
  await alice.locator(`${tid('nav-profile')} img`).waitFor({ timeout: 10_000 });
  aliceId = await alice.locator(tid('nav-profile')).getAttribute('data-user-id');
  assert.ok(aliceId);
  // The saved name survives a round trip to the server (fresh GET /api/me after reload later).
  await assertValue(alice.locator(tid('profile-name')), 'Alice Liddell');
  await shot(alice, 'desktop-profile');

  await bob.locator(tid('nav-profile')).click();
  await bob.locator(tid('profile-name')).fill('Bob');
  await bob.locator(tid('profile-save')).click();
  await assertValue(bob.locator(tid('profile-name')), 'Bob');
});

test('contacts: add each other, rename, search, delete', async () => {
  await addContact(alice, BOB, 'Bobby');
  const bobItem = alice.locator(`${tid('contact-item')}:has-text("Bobby")`);
  bobId = await bobItem.getAttribute('data-user-id');
  assert.ok(bobId, 'Bob has an account, so the contact carries his user id');

  // Rename
  await bobItem.locator(tid('contact-rename')).click();
  await alice.locator(tid('contact-rename-input')).fill('Bob Builder');
  await alice.locator(tid('contact-rename-save')).click();
  await alice.locator(`${tid('contact-item')}[data-user-id="${bobId}"]:has-text("Bob Builder")`).waitFor();

  // A number without an account, then search and delete it.
  await addContact(alice, '+15550199999', 'Zed Nobody');
  await alice.locator(tid('contacts-search')).fill('zed');
  await eventually(async () => (await alice.locator(tid('contact-item')).count()) === 1, { message: 'search filters to one contact' });
  await alice.locator(`${tid('contact-item')}:has-text("Zed Nobody") ${tid('contact-delete')}`).click();
  await eventually(async () => (await alice.locator(`${tid('contact-item')}:has-text("Zed Nobody")`).count()) === 0, { message: 'contact deleted' });
  await alice.locator(tid('contacts-search')).fill('');
  await shot(alice, 'desktop-contacts');

  await addContact(bob, ALICE, 'Alice');
  const aliceItem = bob.locator(`${tid('contact-item')}[data-user-id="${aliceId}"]`);
  await aliceItem.waitFor();
});

test('chat both ways: ticks, receipts, typing, unread badges, text stays text', async () => {
  // Bob waits on his chat list; Alice opens the chat from her contacts.
  await bob.locator(tid('nav-chats')).click();
  await alice.locator(`${tid('contact-item')}[data-user-id="${bobId}"] ${tid('contact-message')}`).click();
  const input = alice.locator(tid('composer-input'));
  await input.fill('Hi Bob! <b>not bold</b>');
  await input.press('Enter');
  await assertText(lastMessage(alice), /Hi Bob!/);
  await eventually(async () => ['sent', 'delivered'].includes(await lastMessage(alice).getAttribute('data-status')), { message: 'message sent (ack)' });
  assert.match(await lastMessage(alice).getAttribute('data-seq'), /^\d+$/);

  // Bob gets a chat row with an unread badge and a preview, without opening anything.
  const row = bob.locator(`${tid('chat-item')}[data-peer-id="${aliceId}"]`);
  await row.waitFor();
  await assertText(row.locator(tid('unread-badge')), '1');
  await assertText(row, /Alice/); // his contact name for her
  await assertText(row, /Hi Bob!/);
  await eventually(async () => (await lastMessage(alice).getAttribute('data-status')) === 'delivered', { message: 'delivered tick' });
  await shot(bob, 'desktop-chats-unread');

  // Typing indicator
  await input.pressSequentially('typing…', { delay: 20 });
  await row.click();
  await bob.locator(tid('typing-indicator')).waitFor({ state: 'visible', timeout: 5000 });
  await input.fill('');

  // Bob opens the chat: the message is text (no <b> element), Alice sees it read (blue ticks).
  const got = bob.locator(tid('message')).filter({ hasText: 'Hi Bob!' });
  await got.waitFor();
  assert.equal(await got.locator('b').count(), 0);
  assert.match(await got.textContent(), /<b>not bold<\/b>/);
  await eventually(async () => (await lastMessage(alice).getAttribute('data-status')) === 'read', { message: 'read receipt' });
  assert.equal(await row.locator(tid('unread-badge')).count(), 0);

  // Reply with the send button.
  await bob.locator(tid('composer-input')).fill('Hello Alice 👋');
  await bob.locator(tid('composer-send')).click();
  await alice.locator(tid('message')).filter({ hasText: 'Hello Alice 👋' }).waitFor();
  await eventually(async () => (await lastMessage(bob).getAttribute('data-status')) === 'read', { message: 'Bob sees his reply read' });
  await assertPresence(alice, /online/);

  // Multi-line (Shift+Enter) stays one message.
  await input.fill('line one');
  await input.press('Shift+Enter');
  await input.pressSequentially('line two');
  await input.press('Enter');
  await bob.locator(tid('message')).filter({ hasText: 'line two' }).waitFor();
  assert.match(await bob.locator(tid('message')).filter({ hasText: 'line two' }).innerText(), /line one\nline two/);
  await shot(alice, 'desktop-conversation');
  assert.deepEqual(alice.problems, []);
  assert.deepEqual(bob.problems, []);
});

test('history paging and unread count from a third user', async () => {
  const carol = await server.apiLogin(CAROL);
  await carol.call('PATCH', '/api/me', { display_name: 'Carol' });
  for (let i = 1; i <= 70; i++) {
    await carol.call('POST', `/api/conversations/with/${aliceId}/messages`, { client_id: `carol-${i}`, body: `Carol #${i}` });
  }
  const row = alice.locator(`${tid('chat-item')}[data-peer-id="${carol.user.id}"]`);
  await alice.locator(tid('nav-chats')).click();
  await row.waitFor();
  await assertText(row.locator(tid('unread-badge')), '70');
  await assertText(row, /Carol/);
  await row.click();
  await alice.locator(tid('message')).filter({ hasText: 'Carol #70' }).waitFor();
  const firstPage = await alice.locator(tid('message')).count();
  assert.ok(firstPage >= 50 && firstPage < 70, `first page holds the latest messages only (${firstPage})`);
  // Scroll to the top: the older page loads and the oldest message appears.
  await eventually(async () => {
    await alice.locator(tid('message-list')).evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
    return (await alice.locator(tid('message')).filter({ hasText: /^Carol #1\b/ }).count()) === 1;
  }, { message: 'older page loaded on scroll-up', timeout: 10_000, interval: 300 });
  assert.equal(await alice.locator(tid('message')).count(), 70);
  await eventually(async () => (await row.locator(tid('unread-badge')).count()) === 0, { message: 'badge cleared after reading' });
});

test('reload restores the session (refresh cookie) and the history', async () => {
  await alice.reload();
  await alice.locator(tid('nav-chats')).waitFor({ timeout: 15_000 });
  assert.equal(await alice.locator(tid('login-phone')).count(), 0, 'no login screen after reload');
  // No token in web storage: the access token lives in memory only.
  const stored = await alice.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert.doesNotMatch(stored, /eyJ|access_token|refresh_token/);
  await alice.locator(`${tid('chat-item')}[data-peer-id="${bobId}"]`).click();
  await alice.locator(tid('message')).filter({ hasText: 'Hi Bob!' }).waitFor();
  await alice.locator(tid('message')).filter({ hasText: 'Hello Alice 👋' }).waitFor();
  assert.equal(await alice.locator(tid('message')).filter({ hasText: 'Hi Bob!' }).getAttribute('data-status'), 'read');
});

test('messages typed while the server is down are delivered after it restarts', async () => {
  await bob.locator(`${tid('chat-item')}[data-peer-id="${aliceId}"]`).click();
  await server.stop();
  await alice.locator(tid('connection-banner')).waitFor({ state: 'visible', timeout: 10_000 });
  await shot(alice, 'desktop-offline-banner');
  const input = alice.locator(tid('composer-input'));
  await input.fill('written offline 1');
  await input.press('Enter');
  await input.fill('written offline 2');
  await input.press('Enter');
  const pending = alice.locator(`${tid('message')}[data-status="pending"]`);
  await eventually(async () => (await pending.count()) === 2, { message: 'two pending messages' });
  // The outbox survives a reload while offline (stored without tokens).
  await alice.reload();
  await alice.locator(tid('connection-banner')).waitFor({ state: 'visible', timeout: 10_000 });
  const outbox = await alice.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('mescon.outbox.')).map((k) => localStorage.getItem(k)).join(''));
  assert.match(outbox, /written offline 2/);
  assert.doesNotMatch(outbox, /eyJ|token/i);

  await server.restart();
  // Alice's page reconnects by itself, restores the session, and the outbox goes out.
  await alice.locator(tid('nav-chats')).waitFor({ timeout: 20_000 });
  for (const text of ['written offline 1', 'written offline 2']) {
    await bob.locator(tid('message')).filter({ hasText: text }).waitFor({ timeout: 20_000 });
  }
  await alice.locator(`${tid('chat-item')}[data-peer-id="${bobId}"]`).click();
  await eventually(async () => {
    const statuses = await alice.locator(tid('message')).filter({ hasText: 'written offline' }).evaluateAll((els) => els.map((e) => e.dataset.status));
    return statuses.length === 2 && statuses.every((s) => ['sent', 'delivered', 'read'].includes(s));
  }, { message: 'offline messages acknowledged', timeout: 15_000 });
  await eventually(async () => !(await alice.locator(tid('connection-banner')).isVisible()), { message: 'banner hidden after reconnect' });
  // Exactly once each, in order, on Bob's side.
  const bobTexts = await bob.locator(tid('message')).allTextContents();
  assert.equal(bobTexts.filter((t) => t.includes('written offline 1')).length, 1);
  assert.equal(bobTexts.filter((t) => t.includes('written offline 2')).length, 1);
  assert.ok(bobTexts.findIndex((t) => t.includes('written offline 1')) < bobTexts.findIndex((t) => t.includes('written offline 2')));
});

test('logout returns to the login screen and the session is gone after reload', async () => {
  await bob.locator(tid('nav-settings')).click();
  await shot(bob, 'desktop-settings');
  await bob.locator(tid('logout')).click();
  await bob.locator(tid('login-phone')).waitFor();
  await bob.reload();
  await bob.locator(tid('login-phone')).waitFor({ timeout: 15_000 });
});

// --- helpers ---------------------------------------------------------------------------------------
async function addContact(page, phone, name) {
  await page.locator(tid('nav-contacts')).click();
  await page.locator(tid('contact-add')).click();
  await page.locator(tid('contact-phone')).fill(phone);
  await page.locator(tid('contact-name')).fill(name);
  await page.locator(tid('contact-save')).click();
  await page.locator(`${tid('contact-item')}:has-text("${name}")`).waitFor();
}

async function assertText(locator, expected, timeout = 10_000) {
  await eventually(async () => {
    const t = (await locator.textContent()) || '';
    return expected instanceof RegExp ? expected.test(t) : t.trim() === expected;
  }, { timeout, message: `text ${expected} in ${locator}` });
}

async function assertValue(locator, expected) {
  await eventually(async () => (await locator.inputValue()) === expected, { message: `value ${expected}` });
}

async function assertPresence(page, re) {
  await assertText(page.locator(tid('presence')), re);
}
